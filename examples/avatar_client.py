"""Avatar client: upload a person's video once, then make a video for each of several audio files.

    python3 examples/avatar_client.py person.mp4 out_dir line-1.wav line-2.wav line-3.mp3

Each task sends its audio and the avatar's id (form field avatar_id), never the video again. The
videos are saved as out_dir/<audio name>.mp4. Needs `requests`. The gateway address comes from
MULTI_HEYGEM_URL (default http://localhost:8101); MULTI_HEYGEM_API_KEY, when set, is sent as the
bearer key. MULTI_HEYGEM_POLL_SECONDS sets how often a task is polled (default 2).
"""
import os
import sys
import time

import requests

BASE_URL = os.environ.get("MULTI_HEYGEM_URL", "http://localhost:8101")
API_KEY = os.environ.get("MULTI_HEYGEM_API_KEY")
POLL_SECONDS = float(os.environ.get("MULTI_HEYGEM_POLL_SECONDS", "2"))
HEADERS = {"Authorization": f"Bearer {API_KEY}"} if API_KEY else {}


def create_avatar(video_path, name):
    with open(video_path, "rb") as video:
        # warm=true: the gateway sends the video to every machine now, before the first task.
        response = requests.post(
            f"{BASE_URL}/avatars",
            files={"video": video},
            data={"name": name, "warm": "true"},
            headers=HEADERS,
            timeout=3600,
        )
    response.raise_for_status()
    avatar = response.json()
    print(f"avatar {avatar['avatar_id']} ({avatar['width']}x{avatar['height']}, {avatar['duration']:.1f} s)")
    return avatar["avatar_id"]


def create_task(avatar_id, audio_path):
    with open(audio_path, "rb") as audio:
        response = requests.post(
            f"{BASE_URL}/tasks",
            files={"audio": audio},
            data={"avatar_id": avatar_id, "description": os.path.basename(audio_path)},
            headers=HEADERS,
            timeout=600,
        )
    response.raise_for_status()
    return response.json()["task_id"]


def wait_and_download(task_id, output_path):
    while True:
        task = requests.get(f"{BASE_URL}/tasks/{task_id}", headers=HEADERS, timeout=30).json()
        if task["status"] == "completed":
            break
        if task["status"] in ("failed", "cancelled"):
            print(f"task {task_id} {task['status']}: {task['error_message']}", file=sys.stderr)
            return False
        time.sleep(POLL_SECONDS)
    with requests.get(task["result_url"], headers=HEADERS, stream=True, timeout=600) as response:
        response.raise_for_status()
        with open(output_path, "wb") as out:
            for chunk in response.iter_content(chunk_size=1 << 20):
                out.write(chunk)
    print(f"saved {output_path} (task {task_id}, completed)")
    return True


def main(video_path, out_dir, audio_paths):
    os.makedirs(out_dir, exist_ok=True)
    avatar_id = create_avatar(video_path, os.path.basename(video_path))
    # Queue every task first: the gateway spreads them over its machines.
    tasks = [(create_task(avatar_id, audio), audio) for audio in audio_paths]
    ok = True
    for task_id, audio in tasks:
        stem = os.path.splitext(os.path.basename(audio))[0]
        ok = wait_and_download(task_id, os.path.join(out_dir, f"{stem}.mp4")) and ok
    return ok


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(f"usage: {sys.argv[0]} VIDEO OUT_DIR AUDIO [AUDIO…]")
    sys.exit(0 if main(sys.argv[1], sys.argv[2], sys.argv[3:]) else 1)
