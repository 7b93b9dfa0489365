"""Text to video: a machine speaks the text, then lip-syncs what it spoke to a person's video.

    python3 examples/text_to_video.py "你好，欢迎光临。" out.mp4 --video person.mp4
    python3 examples/text_to_video.py "Hello!" out.mp4 --avatar-id 9a1d5c3e-… --lang en
    python3 examples/text_to_video.py "你好。" out.mp4 --avatar-id 9a1d5c3e-… --voice-id 5b8e2c1a-… --top-p 0.6

The task sends the text (form field text) instead of an audio file, with a video file or an avatar
uploaded once (POST /avatars). With --voice-id the text is spoken in a voice cloned on a machine
with fish-speech (POST /voices); without, in the machine's own voice (the embedded worker's offline
voice, for one). Saves the MP4 and, beside it, the spoken audio (out.wav: GET /tasks/{id}/audio).
Needs `requests`. The gateway address comes from MULTI_HEYGEM_URL (default http://localhost:8101);
MULTI_HEYGEM_API_KEY, when set, is sent as the bearer key. MULTI_HEYGEM_POLL_SECONDS sets how often
the task is polled (default 2).
"""
import argparse
import os
import sys
import time

import requests

BASE_URL = os.environ.get("MULTI_HEYGEM_URL", "http://localhost:8101")
API_KEY = os.environ.get("MULTI_HEYGEM_API_KEY")
POLL_SECONDS = float(os.environ.get("MULTI_HEYGEM_POLL_SECONDS", "2"))
HEADERS = {"Authorization": f"Bearer {API_KEY}"} if API_KEY else {}
SETTINGS = ("temperature", "top_p", "chunk_length", "repetition_penalty")


def create_task(args):
    data = {"text": args.text, "description": args.text[:60]}
    if args.lang:
        data["lang"] = args.lang
    if args.voice_id:
        data["voice_id"] = args.voice_id
    for name in SETTINGS:
        value = getattr(args, name)
        if value is not None:
            data[name] = str(value)
    # A task is always multipart/form-data, even without a file: (None, value) makes a plain field.
    fields = {name: (None, value) for name, value in data.items()}
    if args.avatar_id:
        fields["avatar_id"] = (None, args.avatar_id)
        response = requests.post(f"{BASE_URL}/tasks", files=fields, headers=HEADERS, timeout=60)
    else:
        with open(args.video, "rb") as video:
            fields["video"] = (os.path.basename(args.video), video)
            response = requests.post(f"{BASE_URL}/tasks", files=fields, headers=HEADERS, timeout=3600)
    if response.status_code != 200:
        # Refusals are JSON: {"error": "NO_VOICE_CLONE_MACHINE", "message": "…", "field": "voice_id"}
        error = response.json()
        sys.exit(f"refused ({response.status_code} {error['error']}): {error['message']}")
    task = response.json()
    print(f"task {task['task_id']}: {task['speech']['lang']} text, about {task['audio_duration']:.1f} s of speech")
    return task["task_id"]


def wait(task_id):
    while True:
        task = requests.get(f"{BASE_URL}/tasks/{task_id}", headers=HEADERS, timeout=30).json()
        if task["status"] == "completed":
            return task
        if task["status"] in ("failed", "cancelled"):
            sys.exit(f"task {task_id} {task['status']} ({task['error_kind']}): {task['error_message']}")
        time.sleep(POLL_SECONDS)


def download(url, path):
    with requests.get(url, headers=HEADERS, stream=True, timeout=600) as response:
        response.raise_for_status()
        with open(path, "wb") as out:
            for chunk in response.iter_content(chunk_size=1 << 20):
                out.write(chunk)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", help="what the person says")
    parser.add_argument("output", help="the MP4 to write; the spoken audio goes beside it as .wav")
    face = parser.add_mutually_exclusive_group(required=True)
    face.add_argument("--video", help="the person's video file")
    face.add_argument("--avatar-id", help="an avatar uploaded once (POST /avatars)")
    parser.add_argument("--voice-id", help="a voice to clone (POST /voices); default the machine's own")
    parser.add_argument("--lang", help="the text's language (zh, en…); default the voice's, else zh")
    for name in SETTINGS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=float if name != "chunk_length" else int)
    args = parser.parse_args()

    task_id = create_task(args)
    task = wait(task_id)
    download(task["result_url"], args.output)
    spoken = os.path.splitext(args.output)[0] + ".wav"
    download(task["audio_url"], spoken)
    print(f"saved {args.output} and {spoken} ({task['audio_duration']:.2f} s spoken, task {task_id})")


if __name__ == "__main__":
    main()
