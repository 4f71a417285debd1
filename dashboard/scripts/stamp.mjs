// After `vite build`: make ../dashboard_dist a Python package and record which sources it was
// built from. tests/dashboard/test_build_fresh.py computes the same hash in Python and fails
// when the sources changed without a rebuild, so keep the two in step.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "..", "dashboard_dist");

// What the build reads: the entry page, the manifests and configs, and three folders.
const FILES = ["index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts"];
const DIRS = ["src", "public", "scripts"];

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

export function sourceHash() {
  const paths = [...FILES.map((f) => join(root, f)), ...DIRS.flatMap((d) => walk(join(root, d)))]
    .map((p) => relative(root, p).split(sep).join("/"))
    .sort();
  const hash = createHash("sha256");
  for (const path of paths) {
    const digest = createHash("sha256").update(readFileSync(join(root, path))).digest("hex");
    hash.update(`${path}\0${digest}\n`);
  }
  return hash.digest("hex");
}

writeFileSync(join(out, "source-hash.txt"), `${sourceHash()}\n`);
writeFileSync(
  join(out, "__init__.py"),
  '"""The dashboard\'s build (dashboard/ → `npm run build`), served by Kestrel at /app/."""\n',
);
console.log(`stamp: wrote dashboard_dist/source-hash.txt and __init__.py`);
