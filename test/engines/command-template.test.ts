import { describe, expect, it } from "vitest";
import { parseCommandTemplate, programOf, renderCommand } from "../../src/engines/command-template.js";

const VALUES = {
  audio: "/w/a b.wav",
  video: "/w/$(touch pwned).mp4",
  output: "/w/out.mp4",
  workdir: "/w",
  job_id: "j1",
  audio_duration: "2.500",
};

const argv = (template: string) => renderCommand(parseCommandTemplate(template), VALUES);

describe("command templates", () => {
  it("splits words like a shell and puts each value inside its own word", () => {
    expect(argv("python infer.py --audio {audio} --face {video} --outfile {output}")).toEqual([
      "python",
      "infer.py",
      "--audio",
      "/w/a b.wav",
      "--face",
      "/w/$(touch pwned).mp4",
      "--outfile",
      "/w/out.mp4",
    ]);
    expect(argv("run --out={output} --tag=job-{job_id}.{audio_duration}s")).toEqual([
      "run",
      "--out=/w/out.mp4",
      "--tag=job-j1.2.500s",
    ]);
  });

  it("follows sh quoting: single quotes literal, double quotes with a few escapes, backslashes", () => {
    expect(argv(`prog 'a  b' "c \\"d\\" \\$e \\n" f\\ g '' "" x'y'"z" {output}`)).toEqual([
      "prog",
      "a  b",
      'c "d" $e \\n',
      "f g",
      "",
      "",
      "xyz",
      "/w/out.mp4",
    ]);
    expect(argv("prog \\\n  --flag {output}")).toEqual(["prog", "--flag", "/w/out.mp4"]);
    expect(argv("prog '|' '>' \"&&\" \\; '$HOME' {output}")).toEqual([
      "prog",
      "|",
      ">",
      "&&",
      ";",
      "$HOME",
      "/w/out.mp4",
    ]);
  });

  it("finds placeholders inside quotes too, and takes {{ }} as literal braces", () => {
    expect(argv(`prog '--out {output}' --json '{{"fps": 25}}'`)).toEqual([
      "prog",
      "--out /w/out.mp4",
      "--json",
      '{"fps": 25}',
    ]);
  });

  it("knows which placeholders a template uses and its program", () => {
    const template = parseCommandTemplate("/opt/venv/bin/python x.py {audio} {output} {output}");
    expect([...template.placeholders].sort()).toEqual(["audio", "output"]);
    expect(programOf(template)).toBe("/opt/venv/bin/python");
    expect(template.source).toBe("/opt/venv/bin/python x.py {audio} {output} {output}");
  });

  it.each([
    ["", /empty/],
    ["   ", /empty/],
    ["python infer.py {audio}", /must contain \{output\}/],
    ["python infer.py {audoi} {output}", /unknown placeholder \{audoi\}; known: \{audio\}, \{video\}/],
    ["python infer.py {Output}", /unknown placeholder \{Output\}/],
    ["python infer.py {output", /without a closing/],
    ["python infer.py output} {output}", /without an opening/],
    ["python 'infer.py {output}", /unclosed ' opened at character 8/],
    ['python "infer.py {output}', /unclosed " opened at character 8/],
    ["python infer.py {output} \\", /lone backslash/],
    ["{video} --out {output}", /program .* cannot contain a placeholder/],
    ["python infer.py {output} > log.txt", /">" at character 26 .* without one/],
    ["python infer.py {output} | tee log", /"\|"/],
    ["python infer.py {output}; echo done", /";"/],
    ["python infer.py {output} &", /"&"/],
    ["python $HOME/infer.py {output}", /"\$"/],
    ["python `which infer` {output}", /"`"/],
    ["python ~/infer.py {output}", /"~" .* full path/],
  ])("refuses %j", (template, problem) => {
    expect(() => parseCommandTemplate(template)).toThrow(problem);
  });
});
