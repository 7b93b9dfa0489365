import type { Logger } from "../logger.js";
import { describeMediaTool } from "./ffmpeg-binaries.js";

/**
 * One start-up line naming the ffmpeg and ffprobe in use with their versions: which build parses
 * untrusted uploads matters (see the README's "ffmpeg" section), and bugs differ between builds.
 */
export async function logMediaTools(logger: Logger): Promise<void> {
  const [ffmpeg, ffprobe] = await Promise.all([describeMediaTool("ffmpeg"), describeMediaTool("ffprobe")]);
  const show = (tool: typeof ffmpeg) => (tool ? `${tool.version} at ${tool.path}` : "not found");
  const line = { ffmpeg: show(ffmpeg), ffprobe: show(ffprobe) };
  if (ffmpeg && ffprobe) logger.info(line, "media tools");
  else logger.warn(line, "media tools missing: install ffmpeg, or set FFMPEG_PATH and FFPROBE_PATH");
}
