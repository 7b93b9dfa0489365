"""Synchronous client: POST /tasks/sync with the audio and the video, save the MP4 it answers with.

    python3 examples/sync_client.py speech.wav person.mp4 out.mp4

Needs `requests`. The gateway address comes from MULTI_HEYGEM_URL (default http://localhost:8101).
"""
import os
import sys

import requests

BASE_URL = os.environ.get("MULTI_HEYGEM_URL", "http://localhost:8101")


def generate_video_sync(audio_path, video_path, output_path, description=None):
    with open(audio_path, "rb") as audio, open(video_path, "rb") as video:
        files = {"audio": audio, "video": video}
        data = {"description": description} if description else {}
        # The answer comes when the video is rendered, which can take minutes on a GPU.
        response = requests.post(f"{BASE_URL}/tasks/sync", files=files, data=data, stream=True, timeout=3600)
    if response.status_code != 200:
        print(f"failed: HTTP {response.status_code}: {response.text}", file=sys.stderr)
        return None
    with open(output_path, "wb") as out:
        for chunk in response.iter_content(chunk_size=1 << 20):
            out.write(chunk)
    task_id = response.headers.get("X-Task-Id")
    print(f"saved {output_path} (task {task_id})")
    return task_id


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(f"usage: {sys.argv[0]} AUDIO VIDEO OUTPUT.mp4")
    sys.exit(0 if generate_video_sync(sys.argv[1], sys.argv[2], sys.argv[3], "sync example") else 1)
