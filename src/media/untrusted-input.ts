/**
 * How ffmpeg and ffprobe may open a file that came from a client. Both tools follow references
 * inside media (an HLS playlist's segments, a DASH manifest's URLs, a concat list's files, an SDP's
 * RTP streams), so an upload could make them fetch from the network or read any local file
 * (issue 9). Two locks close that: only the `file` protocol, and only demuxers of plain media
 * containers, none of which opens another file.
 */

/**
 * Demuxers an upload may use, by ffmpeg's short name (ffmpeg matches any name of a demuxer, so
 * `mov` admits mp4, m4a and 3gp, `matroska` admits webm). Audio: WAV, MP3, AAC, FLAC, Ogg/Opus,
 * M4A, WMA, AIFF, CAF, AMR. Video: MP4/MOV, MKV/WebM, AVI, FLV, MPEG-TS, MPEG-PS, WMV.
 */
export const UPLOAD_DEMUXERS: readonly string[] = [
  "mov",
  "matroska",
  "avi",
  "flv",
  "mpegts",
  "mpeg",
  "asf",
  "wav",
  "w64",
  "mp3",
  "aac",
  "flac",
  "ogg",
  "aiff",
  "caf",
  "amr",
];

/** Input options to put before `-i <upload>` (they apply to that input alone). */
export const UNTRUSTED_INPUT_ARGS: readonly string[] = [
  "-protocol_whitelist",
  "file",
  "-format_whitelist",
  UPLOAD_DEMUXERS.join(","),
];
