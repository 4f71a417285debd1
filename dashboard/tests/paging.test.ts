import { describe, expect, it } from "vitest";
import type { LogRow } from "../src/lib/api";
import { appendOlder, MAX_ROWS, mergeNewer } from "../src/lib/paging";

const row = (id: number) => ({ id }) as LogRow;
const ids = (rows: LogRow[]) => rows.map((r) => r.id);

describe("log paging", () => {
  it("appends an older page without duplicates", () => {
    expect(ids(appendOlder([row(9), row(8)], [row(8), row(7), row(6)]))).toEqual([9, 8, 7, 6]);
  });

  it("puts rows newer than the newest on top", () => {
    const merged = mergeNewer([row(5), row(4)], [row(7), row(6), row(5), row(4)]);
    expect(ids(merged.rows)).toEqual([7, 6, 5, 4]);
    expect(merged.added).toBe(2);
  });

  it("keeps the same array when nothing is new (no re-render)", () => {
    const rows = [row(5), row(4)];
    const merged = mergeNewer(rows, [row(5), row(4)]);
    expect(merged.rows).toBe(rows);
    expect(merged.added).toBe(0);
  });

  it("takes the first page as it is when nothing is shown yet", () => {
    expect(ids(mergeNewer([], [row(2), row(1)]).rows)).toEqual([2, 1]);
  });

  it("caps how many rows are kept", () => {
    const many = Array.from({ length: MAX_ROWS }, (_, i) => row(MAX_ROWS - i));
    const merged = mergeNewer(many, [row(MAX_ROWS + 2), row(MAX_ROWS + 1)]);
    expect(merged.rows).toHaveLength(MAX_ROWS);
    expect(merged.rows[0].id).toBe(MAX_ROWS + 2);
  });
});
