/**
 * Every line the client commands show a person, in English and in Chinese (HeyGem's users are
 * mostly Chinese-speaking; issue 11). Both catalogues have the same keys, which the type checks;
 * `{name}` placeholders are filled by `Messages.t`. Codes in error lines and the data printed for
 * scripts (ids, `--json`) stay as they are in every language.
 */
const en = {
  // Options and help
  "help.submit":
    "upload audio (or text) + video (or an avatar) as task(s); with --wait follow them and save the results",
  "help.tasks": "list tasks, show one, cancel, retry or delete",
  "help.tasks.list": "a table of tasks, newest first",
  "help.tasks.show": "a task's fields and its events",
  "help.tasks.cancel": "cancel a task: a pending one never runs, a running one is stopped",
  "help.tasks.retry": "put a failed or cancelled task back in the queue",
  "help.tasks.delete": "delete a finished task and its files",
  "help.machines": "list machines, drain or resume one",
  "help.machines.list": "a table of the machines",
  "help.machines.drain": "take no new tasks on the machine; what runs there finishes",
  "help.machines.resume": "let a drained machine take tasks again",
  "opt.url": "the gateway",
  "opt.apiKey": "API key (sent as a Bearer token)",
  "opt.audio": "audio file(s); a quoted glob such as 'clips/*.wav' makes one task per file",
  "opt.text": "a text the machine speaks instead of an audio file; repeat it for several tasks",
  "opt.voice": "with --text: a voice made with POST /voices (default: the machine's own)",
  "opt.lang": "with --text: the text's language (default: the voice's, else zh)",
  "opt.video": "the video to lip-sync",
  "opt.avatar": "an avatar made with POST /avatars, instead of --video",
  "opt.description": "a note stored with the task",
  "opt.wait": "follow the task(s) to the end and save the result(s)",
  "opt.out": "with --wait: the result file (one task) or directory (many); default <audio name>.mp4 here",
  "opt.status": "only tasks with this status",
  "opt.limit": "at most this many tasks (1-500)",
  "opt.json": "print JSON instead of a table",
  "arg.id": "the task's id",
  "arg.name": "the machine's name",
  // Usage errors
  "usage.audioOrText": "give --audio or --text (one of the two)",
  "usage.voiceNeedsText": "--voice and --lang go with --text",
  "usage.videoOrAvatar": "give --video or --avatar (one of the two)",
  "usage.noMatch": "no file matches {pattern}",
  "usage.notFile": "{path} is not a file",
  "usage.missing": "{path} does not exist",
  "usage.notDir": "--out {path} is a file, but several results need a directory",
  "usage.outNeedsWait": "--out needs --wait: without it nothing is saved",
  "usage.sameName": "{a} and {b} would both be saved as {out}",
  "usage.badUrl": "{value} is not an http(s) URL",
  "usage.badLimit": "--limit must be a whole number from 1 to 500, not {value}",
  // Progress
  "progress.upload": "upload",
  "progress.uploaded": "{label}: uploaded {size} in {time} ({rate}), task {id}",
  "progress.status": "{label}: {status}",
  "progress.statusOn": "{label}: {status} on {machine}",
  "progress.final": "{label}: {status} after {time}",
  "progress.saved": "{label}: saved {path}",
  "progress.refused": "{label}: refused: {message}",
  "progress.error": "{label}: {message}",
  "progress.failedBecause": "{label}: failed: {message}",
  "summary.counts": "{completed} completed, {failed} failed, {cancelled} cancelled in {time}",
  "summary.savedFile": "result saved to {path}",
  "summary.interrupted": "interrupted: the tasks go on at the gateway (see multi-heygem tasks)",
  "summary.savedDir": "results saved in {path}",
  // Statuses (the API's own words stay in --json)
  "status.uploading": "uploading",
  "status.pending": "pending",
  "status.processing": "processing",
  "status.completed": "completed",
  "status.failed": "failed",
  "status.cancelled": "cancelled",
  "state.unknown": "unknown",
  "state.up": "up",
  "state.down": "down",
  "state.draining": "draining",
  "state.disabled": "disabled",
  // Tables
  "col.id": "ID",
  "col.status": "STATUS",
  "col.machine": "MACHINE",
  "col.progress": "PROGRESS",
  "col.description": "DESCRIPTION",
  "col.created": "CREATED",
  "col.name": "NAME",
  "col.state": "STATE",
  "col.running": "RUNNING/CAPACITY",
  "col.speed": "SPEED",
  "col.doneFailed": "DONE/FAILED",
  "col.lastError": "LAST ERROR",
  "col.at": "TIME",
  "col.event": "EVENT",
  "col.message": "MESSAGE",
  "tasks.total": "{shown} of {total} tasks",
  "tasks.none": "no tasks",
  "machines.none": "no machines",
  "field.id": "id",
  "field.status": "status",
  "field.machine": "machine",
  "field.progress": "progress",
  "field.description": "description",
  "field.created": "created",
  "field.started": "started",
  "field.completed": "finished",
  "field.attempts": "attempts",
  "field.audio": "audio",
  "field.priority": "priority",
  "field.owner": "owner",
  "field.error": "error",
  "field.result": "result",
  "field.callback": "callback",
  "field.events": "events",
  seconds: "{n} s",
  // Actions
  "done.cancel": "task {id}: {status}",
  "done.retry": "task {id}: {status}",
  "done.delete": "task {id}: deleted",
  "done.drain": "machine {name}: {state}",
  "done.resume": "machine {name}: {state}",
} as const;

export type MessageKey = keyof typeof en;

const zhCN: Record<MessageKey, string> = {
  "help.submit": "上传音频（或文本）和视频（或形象）创建任务；加 --wait 跟踪到结束并保存结果",
  "help.tasks": "列出任务、查看、取消、重试或删除任务",
  "help.tasks.list": "任务列表，最新的在前",
  "help.tasks.show": "任务的字段和事件",
  "help.tasks.cancel": "取消任务：排队中的不再运行，运行中的会被停止",
  "help.tasks.retry": "把失败或已取消的任务重新排队",
  "help.tasks.delete": "删除已结束的任务及其文件",
  "help.machines": "列出机器，暂停或恢复接单",
  "help.machines.list": "机器列表",
  "help.machines.drain": "机器不再接新任务；正在运行的会完成",
  "help.machines.resume": "让暂停接单的机器重新接任务",
  "opt.url": "网关地址",
  "opt.apiKey": "API 密钥（作为 Bearer 令牌发送）",
  "opt.audio": "音频文件；加引号的通配符如 'clips/*.wav' 为每个文件创建一个任务",
  "opt.text": "由机器朗读的文本，代替音频文件；重复使用可创建多个任务",
  "opt.voice": "配合 --text：用 POST /voices 创建的声音（默认：机器自带的声音）",
  "opt.lang": "配合 --text：文本的语言（默认：声音的语言，否则 zh）",
  "opt.video": "要对口型的视频",
  "opt.avatar": "用 POST /avatars 创建的形象，代替 --video",
  "opt.description": "随任务保存的备注",
  "opt.wait": "跟踪任务到结束并保存结果",
  "opt.out": "与 --wait 一起：结果文件（一个任务）或目录（多个）；默认当前目录下的 <音频名>.mp4",
  "opt.status": "只列出该状态的任务",
  "opt.limit": "最多列出多少个任务（1-500）",
  "opt.json": "输出 JSON 而不是表格",
  "arg.id": "任务 ID",
  "arg.name": "机器名",
  "usage.audioOrText": "请给出 --audio 或 --text（二选一）",
  "usage.voiceNeedsText": "--voice 和 --lang 需配合 --text 使用",
  "usage.videoOrAvatar": "请给出 --video 或 --avatar（二选一）",
  "usage.noMatch": "没有文件匹配 {pattern}",
  "usage.notFile": "{path} 不是文件",
  "usage.missing": "{path} 不存在",
  "usage.notDir": "--out {path} 是文件，但多个结果需要一个目录",
  "usage.outNeedsWait": "--out 需要 --wait：不加 --wait 不会保存结果",
  "usage.sameName": "{a} 和 {b} 都会保存为 {out}",
  "usage.badUrl": "{value} 不是 http(s) 地址",
  "usage.badLimit": "--limit 必须是 1 到 500 的整数，而不是 {value}",
  "progress.upload": "上传",
  "progress.uploaded": "{label}：已上传 {size}，用时 {time}（{rate}），任务 {id}",
  "progress.status": "{label}：{status}",
  "progress.statusOn": "{label}：{status}，机器 {machine}",
  "progress.final": "{label}：{status}，用时 {time}",
  "progress.saved": "{label}：已保存 {path}",
  "progress.refused": "{label}：被拒绝：{message}",
  "progress.error": "{label}：{message}",
  "progress.failedBecause": "{label}：失败：{message}",
  "summary.counts": "完成 {completed} 个，失败 {failed} 个，取消 {cancelled} 个，用时 {time}",
  "summary.savedFile": "结果已保存到 {path}",
  "summary.interrupted": "已中断：任务仍在网关上继续（见 multi-heygem tasks）",
  "summary.savedDir": "结果已保存在 {path}",
  "status.uploading": "上传中",
  "status.pending": "排队中",
  "status.processing": "处理中",
  "status.completed": "已完成",
  "status.failed": "失败",
  "status.cancelled": "已取消",
  "state.unknown": "未知",
  "state.up": "在线",
  "state.down": "离线",
  "state.draining": "暂停接单",
  "state.disabled": "已停用",
  "col.id": "ID",
  "col.status": "状态",
  "col.machine": "机器",
  "col.progress": "进度",
  "col.description": "描述",
  "col.created": "创建时间",
  "col.name": "名称",
  "col.state": "状态",
  "col.running": "运行/容量",
  "col.speed": "速度",
  "col.doneFailed": "完成/失败",
  "col.lastError": "最近错误",
  "col.at": "时间",
  "col.event": "事件",
  "col.message": "信息",
  "tasks.total": "共 {total} 个任务，显示 {shown} 个",
  "tasks.none": "没有任务",
  "machines.none": "没有机器",
  "field.id": "ID",
  "field.status": "状态",
  "field.machine": "机器",
  "field.progress": "进度",
  "field.description": "描述",
  "field.created": "创建",
  "field.started": "开始",
  "field.completed": "结束",
  "field.attempts": "尝试次数",
  "field.audio": "音频",
  "field.priority": "优先级",
  "field.owner": "所有者",
  "field.error": "错误",
  "field.result": "结果",
  "field.callback": "回调",
  "field.events": "事件",
  seconds: "{n} 秒",
  "done.cancel": "任务 {id}：{status}",
  "done.retry": "任务 {id}：{status}",
  "done.delete": "任务 {id}：已删除",
  "done.drain": "机器 {name}：{state}",
  "done.resume": "机器 {name}：{state}",
};

export const CATALOGUES = { en, "zh-CN": zhCN } as const;
export type Language = keyof typeof CATALOGUES;

/**
 * The language of the environment, as POSIX ranks its variables: LC_ALL, then LC_MESSAGES, then
 * LANG; the first one set decides. zh_CN, zh_TW, zh… → Chinese; anything else (C, en_US…) → English.
 */
export function languageOf(env: NodeJS.ProcessEnv): Language {
  const locale = [env.LC_ALL, env.LC_MESSAGES, env.LANG].find((v) => v !== undefined && v !== "");
  return locale?.toLowerCase().startsWith("zh") ? "zh-CN" : "en";
}

export class Messages {
  private readonly catalogue: Record<MessageKey, string>;

  constructor(readonly language: Language) {
    this.catalogue = CATALOGUES[language];
  }

  t(key: MessageKey, params: Record<string, string | number> = {}): string {
    return this.catalogue[key].replace(/\{(\w+)\}/g, (whole, name: string) =>
      Object.hasOwn(params, name) ? String(params[name]) : whole,
    );
  }

  /** A task status or machine state in this language; an unknown word as it came. */
  word(prefix: "status" | "state", value: string): string {
    const key = `${prefix}.${value}`;
    return Object.hasOwn(this.catalogue, key) ? this.catalogue[key as MessageKey] : value;
  }
}
