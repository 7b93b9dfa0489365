import { readFile } from "node:fs/promises";

/** CPU a process has used so far, from /proc/PID/stat (Linux), in milliseconds. */
export interface ProcessCpu {
  /** user + system time of the process itself (all its threads). */
  readonly ownMs: number;
  /** user + system time of its children that have ended and been waited for (ffprobe, ffmpeg). */
  readonly childrenMs: number;
}

/** Clock ticks per second of /proc's times: USER_HZ, 100 on every Linux this runs on. */
const TICKS_PER_SECOND = 100;

export async function processCpu(pid: number): Promise<ProcessCpu> {
  const text = await readFile(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // stat(5): utime is field 14, stime 15, cutime 16, cstime 17; `fields` starts at field 3.
  const tick = (n: number) => Number(fields[n - 3]);
  const ms = (ticks: number) => (ticks * 1000) / TICKS_PER_SECOND;
  return { ownMs: ms(tick(14) + tick(15)), childrenMs: ms(tick(16) + tick(17)) };
}
