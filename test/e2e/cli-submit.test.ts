import { copyFile, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testKey, writeKeysFile } from "../helpers/api-keys.js";
import { removeDir, startTestGateway, tempDir } from "../helpers/gateway.js";
import { makeAudio, makeVideo, probe } from "../helpers/media.js";
import { CLI, run } from "../helpers/processes.js";
import { until } from "../helpers/until.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ESC = "\x1b[";

/**
 * Issue 11: `multi-heygem submit|tasks|machines`, the built CLI as a child process against a real
 * gateway (API keys on) with its embedded ffmpeg worker, so results are real MP4s.
 */
describe("multi-heygem submit, tasks and machines against a gateway", () => {
  let dir: string;
  let gateway: Awaited<ReturnType<typeof startTestGateway>>;
  const admin = testKey("boss", "admin");
  const shop = testKey("shop", "submit");

  /** The CLI in `dir`, in English, pointed at the gateway with the admin key unless told. */
  function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
    return run(process.execPath, [CLI, ...args], {
      cwd: dir,
      env: {
        LANG: "C",
        LC_ALL: "",
        LC_MESSAGES: "",
        MULTI_HEYGEM_URL: gateway.url,
        MULTI_HEYGEM_API_KEY: admin.key,
        ...env,
      },
    });
  }

  beforeAll(async () => {
    dir = await tempDir();
    await makeVideo(join(dir, "v.mp4"), { seconds: 1 });
    await makeAudio(join(dir, "a.wav"), { seconds: 1 });
    await mkdir(join(dir, "clips"));
    for (const name of ["one", "two", "three"])
      await makeAudio(join(dir, "clips", `${name}.wav`), { seconds: 1 });
    await writeKeysFile(join(dir, "keys.json"), [admin, shop]);
    gateway = await startTestGateway({ apiKeys: join(dir, "keys.json") }, join(dir, "gateway"));
  });

  afterAll(async () => {
    await gateway.close();
    await removeDir(dir);
  });

  it("submit --wait --out uploads, follows the task in plain lines and saves a real MP4 (exit 0)", async () => {
    const res = await cli([
      "submit",
      "--audio",
      "a.wav",
      "--video",
      "v.mp4",
      "--description",
      "from the CLI",
      "--wait",
      "--out",
      "out/first.mp4",
    ]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toBe("");
    // No terminal: plain lines, one per change, no escape codes.
    expect(res.stderr).not.toContain(ESC);
    const lines = res.stderr.trim().split("\n");
    expect(lines[0]).toMatch(/^a\.wav: uploaded .+ in .+ \(.+\/s\), task [0-9a-f-]{36}$/);
    expect(lines).toContain("a.wav: processing on embedded");
    expect(lines).toContain("a.wav: saved out/first.mp4");
    expect(lines.at(-2)).toMatch(/^1 completed, 0 failed, 0 cancelled in \d+:\d\d$/);
    expect(lines.at(-1)).toBe("result saved to out/first.mp4");
    const info = await probe(join(dir, "out", "first.mp4"));
    expect(info.video).toBeDefined();
    expect(info.durationSec).toBeCloseTo(1, 0);
    expect(await readdir(join(dir, "out"))).toEqual(["first.mp4"]);
  });

  it("submit --text with --avatar speaks each text and saves text-1.mp4, text-2.mp4 (issue 12)", async () => {
    const avatar = await cli(["submit", "--text", "你好", "--avatar", "no-such-avatar"]);
    expect(avatar.code).toBe(1);
    expect(avatar.stderr).toContain("UNKNOWN_AVATAR");
    const form = new FormData();
    form.set("video", new Blob([await readFile(join(dir, "v.mp4"))]), "v.mp4");
    const made = await fetch(`${gateway.url}/avatars`, {
      method: "POST",
      body: form,
      headers: { authorization: `Bearer ${admin.key}` },
    });
    const { avatar_id } = (await made.json()) as { avatar_id: string };
    expect(made.status).toBe(201);

    const res = await cli([
      "submit",
      "--text",
      "你好。",
      "--text",
      "Hello there.",
      "--lang",
      "en",
      "--avatar",
      avatar_id,
      "--wait",
      "--out",
      "spoken",
    ]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toContain("你好。: saved spoken/text-1.mp4");
    expect(res.stderr).toContain("Hello there.: saved spoken/text-2.mp4");
    for (const name of ["text-1.mp4", "text-2.mp4"]) {
      const info = await probe(join(dir, "spoken", name));
      expect(info.video).toBeDefined();
      expect(info.audio).toBeDefined();
    }
    // What a text task needs, and nothing that contradicts it, or a usage error (exit 2).
    for (const args of [
      ["--text", "你好", "--audio", "a.wav", "--video", "v.mp4"],
      ["--video", "v.mp4"],
      ["--audio", "a.wav", "--voice", "lin", "--video", "v.mp4"],
      ["--text", "你好"],
      ["--text", "你好", "--video", "v.mp4", "--avatar", avatar_id],
    ]) {
      const refused = await cli(["submit", ...args]);
      expect(refused.code, args.join(" ")).toBe(2);
      expect(refused.stderr).toMatch(/^multi-heygem: USAGE_ERROR: /);
    }
  });

  it("a quoted glob makes one task per file, one result each and a summary", async () => {
    const res = await cli([
      "submit",
      "--audio",
      "clips/*.wav",
      "--video",
      "v.mp4",
      "--wait",
      "--out",
      "many",
    ]);
    expect(res.code, res.stderr).toBe(0);
    for (const name of ["one", "two", "three"]) {
      expect(res.stderr).toContain(`${name}.wav: saved many/${name}.mp4`);
      expect((await probe(join(dir, "many", `${name}.mp4`))).video).toBeDefined();
    }
    expect((await readdir(join(dir, "many"))).sort()).toEqual(["one.mp4", "three.mp4", "two.mp4"]);
    expect(res.stderr).toMatch(/\n3 completed, 0 failed, 0 cancelled in \d+:\d\d\nresults saved in many\n$/);
  });

  it("draws bars that redraw in place under a terminal", async () => {
    const command = [
      process.execPath,
      CLI,
      "submit",
      "--audio",
      "a.wav",
      "--video",
      "v.mp4",
      "--wait",
      "--out",
      "tty.mp4",
    ]
      .map((a) => `'${a}'`)
      .join(" ");
    // util-linux script(1) gives the CLI a pseudo-terminal; its output is what the terminal got.
    const res = await run("script", ["-qfec", command, "/dev/null"], {
      cwd: dir,
      env: {
        LANG: "C",
        LC_ALL: "",
        LC_MESSAGES: "",
        MULTI_HEYGEM_URL: gateway.url,
        MULTI_HEYGEM_API_KEY: admin.key,
      },
    });
    expect(res.code, res.stdout).toBe(0);
    // The row is drawn, then the cursor goes back up over it and it is drawn again, line cleared.
    expect(res.stdout).toContain(`${ESC}2Ka.wav  [`);
    expect(res.stdout).toContain(`\r${ESC}1A${ESC}2Ka.wav  [`);
    expect(res.stdout).toMatch(/a\.wav {2}\[\.+\] +0% {2}uploading/);
    expect(res.stdout).toMatch(/a\.wav {2}\[#{20}\] 100% {2}completed {2}embedded {2}\d+:\d\d {2}→ tty\.mp4/);
    expect(res.stdout).toMatch(/1 completed, 0 failed, 0 cancelled/);
    expect((await probe(join(dir, "tty.mp4"))).video).toBeDefined();
  });

  it("without --wait prints only the task ids on stdout and exits 0", async () => {
    const res = await cli(["submit", "--audio", "clips/one.wav", "clips/two.wav", "--video", "v.mp4"]);
    expect(res.code, res.stderr).toBe(0);
    const ids = res.stdout.trim().split("\n");
    expect(ids).toHaveLength(2);
    for (const id of ids) expect(id).toMatch(UUID);

    const listed = await cli(["tasks", "--json", "--limit", "500"]);
    expect(listed.code, listed.stderr).toBe(0);
    const page = JSON.parse(listed.stdout) as { tasks: { task_id: string }[] };
    expect(page.tasks.map((t) => t.task_id)).toEqual(expect.arrayContaining(ids));
  });

  it("tasks prints a table, filtered by status and limited", async () => {
    const res = await cli(["tasks", "--status", "completed", "--limit", "2"]);
    expect(res.code, res.stderr).toBe(0);
    const [header, ...rows] = res.stdout.trim().split("\n");
    expect(header).toMatch(/^ID +STATUS +MACHINE +PROGRESS +CREATED +DESCRIPTION$/);
    expect(rows).toHaveLength(2);
    for (const row of rows)
      expect(row).toMatch(/^[0-9a-f-]{36} +completed +embedded +100% +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/);
    expect(res.stderr).toMatch(/^2 of \d+ tasks\n$/);
  });

  it("tasks show prints the task's fields and its events", async () => {
    const listed = await cli(["tasks", "--json", "--status", "completed", "--limit", "500"]);
    const page = JSON.parse(listed.stdout) as { tasks: { task_id: string; description: string | null }[] };
    const task = page.tasks.find((t) => t.description === "from the CLI");
    expect(task).toBeDefined();
    const res = await cli(["tasks", "show", task?.task_id ?? ""]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(new RegExp(`^id +${task?.task_id}$`, "m"));
    expect(res.stdout).toMatch(/^status +completed$/m);
    expect(res.stdout).toMatch(/^description +from the CLI$/m);
    expect(res.stdout).toMatch(/^events\nTIME +EVENT +STATUS +MACHINE +PROGRESS +MESSAGE$/m);
    for (const event of ["created", "queued", "dispatched", "completed"]) {
      expect(res.stdout).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d +${event} `, "m"));
    }
  });

  it("machines prints a table; drain and resume change the state", async () => {
    // Tasks created without --wait by the tests before may still run: read the table once idle.
    await until(() => gateway.fleet.get("embedded")?.running.size === 0, 60_000, {
      what: "the embedded machine idle",
    });
    const table = await cli(["machines"]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^NAME +STATE +RUNNING\/CAPACITY +SPEED +DONE\/FAILED +LAST ERROR\n/);
    expect(table.stdout).toMatch(/^embedded +up +0\/1 +\d+\.\d\d +\d+\/0\s*$/m);

    const drained = await cli(["machines", "drain", "embedded"]);
    expect(drained.code, drained.stderr).toBe(0);
    expect(drained.stderr).toBe("machine embedded: draining\n");
    const json = await cli(["machines", "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject([{ name: "embedded", state: "draining", draining: true }]);

    const resumed = await cli(["machines", "resume", "embedded"]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/^machine embedded: (up|unknown)\n$/);
    expect(JSON.parse((await cli(["machines", "--json"])).stdout)).toMatchObject([{ draining: false }]);

    const missing = await cli(["machines", "drain", "nowhere"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^multi-heygem: NOT_FOUND: .+\n$/);
  });

  it("takes the key from --api-key or MULTI_HEYGEM_API_KEY, and without one the gateway refuses (exit 1)", async () => {
    const none = await cli(["submit", "--audio", "a.wav", "--video", "v.mp4"], { MULTI_HEYGEM_API_KEY: "" });
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/^multi-heygem: UNAUTHORIZED: [^\n]+\n$/);

    const flag = await cli(["submit", "--audio", "a.wav", "--video", "v.mp4", "--api-key", shop.key], {
      MULTI_HEYGEM_API_KEY: "",
    });
    expect(flag.code, flag.stderr).toBe(0);
    const env = await cli(["submit", "--audio", "a.wav", "--video", "v.mp4"], {
      MULTI_HEYGEM_API_KEY: shop.key,
    });
    expect(env.code, env.stderr).toBe(0);

    // The submit key sees its own tasks only: the two just made, under its name.
    const own = await cli(["tasks", "--json", "--limit", "500"], { MULTI_HEYGEM_API_KEY: shop.key });
    const page = JSON.parse(own.stdout) as { tasks: { task_id: string; owner: string }[] };
    expect(page.tasks.map((t) => t.task_id).sort()).toEqual([flag.stdout.trim(), env.stdout.trim()].sort());
    // …and machines are for admins.
    const machines = await cli(["machines"], { MULTI_HEYGEM_API_KEY: shop.key });
    expect(machines.code).toBe(1);
    expect(machines.stderr).toMatch(/^multi-heygem: FORBIDDEN: [^\n]+\n$/);
  });

  it("usage errors exit 2 with one line and send nothing", async () => {
    const before = JSON.parse((await cli(["tasks", "--json", "--limit", "500"])).stdout) as { total: number };
    const cases: [string[], RegExp][] = [
      [
        ["submit", "--audio", "nothing/*.wav", "--video", "v.mp4"],
        /USAGE_ERROR: no file matches nothing\/\*\.wav/,
      ],
      [["submit", "--audio", "missing.wav", "--video", "v.mp4"], /USAGE_ERROR: missing\.wav does not exist/],
      [["submit", "--audio", "a.wav", "--video", "nope.mp4"], /USAGE_ERROR: nope\.mp4 does not exist/],
      [["submit", "--audio", "clips", "--video", "v.mp4"], /USAGE_ERROR: clips is not a file/],
      [
        ["submit", "--audio", "a.wav", "--video", "v.mp4", "--out", "x.mp4"],
        /USAGE_ERROR: --out needs --wait/,
      ],
      [["submit", "--video", "v.mp4"], /USAGE_ERROR: give --audio or --text \(one of the two\)/],
      [
        ["submit", "--audio", "a.wav", "--video", "v.mp4", "--url", "ftp://x"],
        /USAGE_ERROR: ftp:\/\/x is not an http/,
      ],
      [["tasks", "--limit", "0"], /USAGE_ERROR: --limit must be a whole number from 1 to 500, not 0/],
      [["tasks", "--status", "lost"], /argument 'lost' is invalid/],
      [["tasks", "show"], /missing required argument 'id'/],
      [["machines", "--bogus"], /unknown option '--bogus'/],
    ];
    for (const [args, message] of cases) {
      const res = await cli(args);
      expect(res.code, args.join(" ")).toBe(2);
      expect(res.stderr, args.join(" ")).toMatch(/^multi-heygem: [^\n]+\n$/);
      expect(res.stderr, args.join(" ")).toMatch(message);
      expect(res.stdout).toBe("");
    }
    const after = JSON.parse((await cli(["tasks", "--json", "--limit", "500"])).stdout) as { total: number };
    expect(after.total).toBe(before.total);
  });

  it("a gateway that cannot be reached is one line and exit 1", async () => {
    const res = await cli(["tasks"], { MULTI_HEYGEM_URL: "http://127.0.0.1:9" });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^multi-heygem: UNREACHABLE: cannot reach http:\/\/127\.0\.0\.1:9[^\n]*\n$/);
  });

  it("speaks Chinese under LANG=zh_CN.UTF-8", async () => {
    await copyFile(join(dir, "a.wav"), join(dir, "声音.wav"));
    const res = await cli(["submit", "--audio", "声音.wav", "--video", "v.mp4", "--wait"], {
      LANG: "zh_CN.UTF-8",
    });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toContain("声音.wav：处理中，机器 embedded");
    expect(res.stderr).toContain("声音.wav：已保存 声音.mp4");
    expect(res.stderr).toMatch(/完成 1 个，失败 0 个，取消 0 个，用时 \d+:\d\d\n结果已保存到 声音\.mp4\n$/);
    expect((await probe(join(dir, "声音.mp4"))).video).toBeDefined();

    const machines = await cli(["machines"], { LANG: "zh_CN.UTF-8" });
    expect(machines.stdout).toMatch(/^名称 +状态 +运行\/容量 +速度 +完成\/失败 +最近错误\n/);
    expect(machines.stdout).toMatch(/^embedded +在线 +/m);
    // LC_ALL outranks LANG, as POSIX says.
    const english = await cli(["machines"], { LANG: "zh_CN.UTF-8", LC_ALL: "en_US.UTF-8" });
    expect(english.stdout).toMatch(/^NAME +STATE/);
    const usage = await cli(["submit", "--audio", "无.wav", "--video", "v.mp4"], {
      LC_MESSAGES: "zh_TW.UTF-8",
    });
    expect(usage.stderr).toBe("multi-heygem: USAGE_ERROR: 无.wav 不存在\n");
  });

  it("a file the gateway refuses: one error line and exit 1; in a batch the others still run", async () => {
    await mkdir(join(dir, "mixed"));
    await writeFile(join(dir, "mixed", "b-noise.wav"), "this is not audio");
    await copyFile(join(dir, "a.wav"), join(dir, "mixed", "a-good.wav"));
    await copyFile(join(dir, "a.wav"), join(dir, "mixed", "c-good.wav"));

    const alone = await cli(["submit", "--audio", "mixed/b-noise.wav", "--video", "v.mp4", "--wait"]);
    expect(alone.code).toBe(1);
    expect(alone.stderr).toMatch(/^multi-heygem: INVALID_MEDIA: [^\n]+\n$/);

    const batch = await cli([
      "submit",
      "--audio",
      "mixed/*.wav",
      "--video",
      "v.mp4",
      "--wait",
      "--out",
      "mixed-out",
    ]);
    expect(batch.code).toBe(1);
    expect(batch.stderr).toMatch(/^b-noise\.wav: refused: INVALID_MEDIA: .+$/m);
    expect(batch.stderr).toMatch(
      /\n2 completed, 1 failed, 0 cancelled in \d+:\d\d\nresults saved in mixed-out\n$/,
    );
    expect((await readdir(join(dir, "mixed-out"))).sort()).toEqual(["a-good.mp4", "c-good.mp4"]);
  });
});
