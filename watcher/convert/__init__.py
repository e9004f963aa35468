"""Turning what HeyGen refuses into what it takes: Pillow (with pillow-heif) for images, FFmpeg
for audio and video. Knows files and tools only: nothing of folders, journals or the API."""
