import { InputError } from "../errors.js";
import { readAudioHeader } from "../media/audio-header.js";
import { MediaError, type MediaInfo, probeMedia } from "../media/probe.js";
import { readVideoHeader } from "../media/video-header.js";
import type { MediaFactsStore } from "../store/media-facts-store.js";

export type UploadKind = "audio" | "video";

export interface UploadedFile {
  readonly path: string;
  readonly sha256: string;
  /** The whole file, when the upload was held in memory: an audio is then read from it. */
  readonly content?: Buffer | undefined;
}

/** The in-process reading of an upload's headers; `undefined` leaves the file to ffprobe. */
export function readHeader(
  path: string,
  kind: UploadKind,
  content?: Buffer | undefined,
): Promise<MediaInfo | undefined> {
  return kind === "audio" ? readAudioHeader(path, content) : readVideoHeader(path);
}

/**
 * Decides whether an upload is usable media and what it is. Facts are kept by content hash, so a
 * template reused for the thousandth time is not read again; common audio files and H.264 MP4/MOV
 * templates are read from their headers in process; ffprobe judges the rest. Intake speed then no
 * longer depends on which ffprobe is installed (issue 8: Debian's costs ~80–200 ms a run, the
 * static build ~12 ms), and a new template's task is created sooner after its upload (issue 14).
 */
export class MediaInspector {
  private readonly probe: typeof probeMedia;
  private readonly readHeader: typeof readHeader;

  constructor(
    private readonly facts: MediaFactsStore,
    /** The two ways of measuring; tests count their calls. */
    measures: { probe?: typeof probeMedia; readHeader?: typeof readHeader } = {},
  ) {
    this.probe = measures.probe ?? probeMedia;
    this.readHeader = measures.readHeader ?? readHeader;
  }

  async inspect(file: UploadedFile, kind: UploadKind): Promise<MediaInfo> {
    const media = (await this.facts.get(file.sha256)) ?? (await this.measure(file, kind));
    check(media, kind);
    return media;
  }

  private async measure(file: UploadedFile, kind: UploadKind): Promise<MediaInfo> {
    const header = await this.readHeader(file.path, kind, file.content);
    if (header) {
      await this.facts.put(file.sha256, header, "header");
      return header;
    }
    let media: MediaInfo;
    try {
      media = await this.probe(file.path);
    } catch (err) {
      // Only ffprobe's verdict on the file is the client's fault; a missing ffprobe is ours.
      if (!(err instanceof MediaError)) throw err;
      throw new InputError("INVALID_MEDIA", `${kind} is not a readable media file: ${err.message}`, kind);
    }
    await this.facts.put(file.sha256, media, "ffprobe");
    return media;
  }
}

/** What a task needs of each file; facts are stored whatever the use, so this runs every time. */
function check(media: MediaInfo, kind: UploadKind): void {
  if (kind === "audio" && !media.audio) {
    throw new InputError("INVALID_MEDIA", "audio has no audio stream", "audio");
  }
  if (kind === "video" && !media.video) {
    throw new InputError("INVALID_MEDIA", "video has no video stream", "video");
  }
  if (kind === "audio" && !(media.durationSec > 0)) {
    throw new InputError("INVALID_MEDIA", "audio has no measurable duration", "audio");
  }
}
