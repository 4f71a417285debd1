import { modelParts } from "../lib/format";
import { cx } from "./ui";

/**
 * A model name that keeps its end in sight when its cell is too narrow: the middle gives way to
 * an ellipsis, and on phones the `claude-` prefix is left out (the full name is the tooltip).
 * Inline boxes only, so that the name reads and copies as one word; monospace, so that the
 * room kept for the end (in `ch`) is exactly its width and a name that fits is never cut.
 */
export function ModelName({ name, className }: { name: string; className?: string }) {
  const { prefix, head, tail } = modelParts(name);
  return (
    <span className={cx("block font-mono text-[0.8125rem] leading-5 whitespace-nowrap", className)} title={name}>
      <span className="inline-block truncate align-bottom" style={{ maxWidth: `calc(100% - ${tail.length}ch + 1px)` }}>
        {prefix && <span className="max-sm:hidden">{prefix}</span>}{head}
      </span>{tail}
    </span>
  );
}
