"""Asynchronous client: POST /tasks, poll GET /tasks/{task_id}, then download the result.

    python3 examples/async_client.py speech.wav person.mp4 out.mp4

Needs `aiohttp` and `aiofiles`. The gateway address comes from MULTI_HEYGEM_URL
(default http://localhost:8101).
"""
import asyncio
import os
import sys

import aiofiles
import aiohttp

BASE_URL = os.environ.get("MULTI_HEYGEM_URL", "http://localhost:8101")
POLL_SECONDS = float(os.environ.get("MULTI_HEYGEM_POLL_SECONDS", "2"))


async def create_task(session, audio_path, video_path, description=None, callback_url=None):
    form = aiohttp.FormData()
    form.add_field("audio_file", open(audio_path, "rb"), filename=os.path.basename(audio_path))
    form.add_field("video_file", open(video_path, "rb"), filename=os.path.basename(video_path))
    if description:
        form.add_field("description", description)
    if callback_url:
        form.add_field("callback_url", callback_url)
    async with session.post(f"{BASE_URL}/tasks", data=form) as response:
        body = await response.json()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body}")
        return body["task_id"]


async def wait_for_task(session, task_id):
    while True:
        async with session.get(f"{BASE_URL}/tasks/{task_id}") as response:
            task = await response.json()
        print(f"task {task_id}: {task['status']} {task['progress']}%")
        if task["status"] in ("completed", "failed"):
            return task
        await asyncio.sleep(POLL_SECONDS)


async def download(session, url, output_path):
    async with session.get(url) as response:
        response.raise_for_status()
        async with aiofiles.open(output_path, "wb") as out:
            async for chunk in response.content.iter_chunked(1 << 20):
                await out.write(chunk)


async def main(audio_path, video_path, output_path):
    async with aiohttp.ClientSession() as session:
        task_id = await create_task(session, audio_path, video_path, "async example")
        task = await wait_for_task(session, task_id)
        if task["status"] != "completed":
            print(f"failed: {task['error_message']}", file=sys.stderr)
            return 1
        await download(session, task["result_url"], output_path)
        print(f"saved {output_path} (task {task_id})")
        return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(f"usage: {sys.argv[0]} AUDIO VIDEO OUTPUT.mp4")
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3])))
