"""Conversion: the daemon converting and uploading, against the converting tool alone on the
same file in the same run.

    python bench/convert_bench.py [--seconds 60] [--megapixels 12] [--burst 100]

Rows: a 1080p H.264 MOV remuxed to MP4, and a 12 MP HEIC made a JPEG, each timed by the
daemon's own measure of its conversion step (`heygen_watcher_conversion_seconds_total`:
probe, convert, hash the output) against ffmpeg / Pillow alone, and drop-to-sidecar for the
whole way (sniff, hash, convert, upload to the local sandbox); then a burst of HEIC photos
dropped at once: files per second and the daemon's peak RSS, against Pillow alone converting
the same files one after another. Settings: the defaults (`convert_concurrency: 1`), one
folder with `convert: true`, protocol v1-presigned, the sandbox in its own process.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from common import Row, peak_rss_mb, sandbox_process, wait_until
from daemon_harness import Daemon, fast_api, sidecars_in
from PIL import Image, ImageOps

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


def make_movie(path: Path, seconds: int) -> None:
    """A 1080p30 H.264/AAC QuickTime movie, as a phone or a screen recorder writes one."""
    subprocess.run(
        [
            *(FFMPEG, "-nostdin", "-loglevel", "error", "-y"),
            *("-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=30:duration={seconds}"),
            *("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"),
            *("-c:v", "libx264", "-preset", "ultrafast", "-b:v", "6M", "-pix_fmt", "yuv420p"),
            *("-c:a", "aac", "-shortest", str(path)),
        ],
        check=True,
    )


def make_photo(path: Path, megapixels: float, seed: int) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(width * 3 / 4)
    noise = Image.effect_noise((width // 8, height // 8), 40 + seed % 50)
    gradient = Image.linear_gradient("L").resize(noise.size)
    picture = Image.merge("RGB", (noise, gradient, noise.transpose(Image.Transpose.ROTATE_180)))
    picture.resize((width, height)).save(path, format="HEIF", quality=80)


def best_of(runs: int, work: callable) -> float:  # type: ignore[valid-type]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def ffmpeg_remux(source: Path, target: Path) -> None:
    subprocess.run(
        [
            *(FFMPEG, "-nostdin", "-loglevel", "error", "-y", "-i", str(source)),
            *("-map", "0:v:0", "-map", "0:a:0?", "-c", "copy", "-movflags", "+faststart"),
            *("-f", "mp4", str(target)),
        ],
        check=True,
    )


def pillow_jpeg(source: Path, target: Path) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    with Image.open(source) as picture:
        ImageOps.exif_transpose(picture).convert("RGB").save(
            target, "JPEG", quality=92, optimize=True
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def conversion_seconds(metrics_url: str) -> float:
    text = requests.get(metrics_url, timeout=10).text
    found = re.search(r"^heygen_watcher_conversion_seconds_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


class ConvertingDaemon:
    def __init__(self, work: Path, api_url: str) -> None:
        self.drop = work / "drop"
        self.drop.mkdir(parents=True)
        self.port = free_port()
        self.daemon = Daemon(
            work,
            api_url,
            [{"path": str(self.drop), "convert": True, "settle_seconds": 0.2}],
            api=fast_api(4),
            metrics={"listen": f"127.0.0.1:{self.port}"},
        )
        self.daemon.wait_ready()

    @property
    def metrics(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def take(self, files: list[Path], timeout: float = 1800) -> tuple[float, float]:
        """Rename the files in at once; (seconds until every sidecar, conversion seconds)."""
        before = conversion_seconds(self.metrics)
        wanted = sidecars_in(self.drop) + len(files)
        started = time.monotonic()
        for path in files:
            os.rename(path, self.drop / path.name)
        wait_until(lambda: sidecars_in(self.drop) >= wanted, timeout, "the sidecars", poll=0.02)
        elapsed = time.monotonic() - started
        return elapsed, conversion_seconds(self.metrics) - before

    def stop(self) -> float:
        rss = peak_rss_mb(self.daemon.process.pid)
        self.daemon.stop()
        return rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="the movie's length")
    parser.add_argument("--megapixels", type=float, default=12, help="the single photo's size")
    parser.add_argument("--burst", type=int, default=100, help="photos in the burst")
    parser.add_argument("--burst-megapixels", type=float, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="convert-bench-"))
    rows: list[Row] = []
    try:
        source = work / "source"
        source.mkdir()
        movie = source / "recording.mov"
        make_movie(movie, args.seconds)
        photo = source / "photo.heic"
        make_photo(photo, args.megapixels, seed=0)
        burst = [source / f"burst-{i:03}.heic" for i in range(args.burst)]
        for index, path in enumerate(burst):
            make_photo(path, args.burst_megapixels, seed=index + 1)
        size = f"{args.seconds} s 1080p30 H.264/AAC, {movie.stat().st_size / 1e6:.0f} MB"
        scratch = work / "scratch"
        scratch.mkdir()
        remux_alone = best_of(3, lambda: ffmpeg_remux(movie, scratch / "out.mp4"))
        jpeg_alone = best_of(3, lambda: pillow_jpeg(photo, scratch / "out.jpg"))
        started = time.perf_counter()
        for path in burst:
            pillow_jpeg(path, scratch / "burst.jpg")
        burst_alone = len(burst) / (time.perf_counter() - started)
        with sandbox_process(work / "sandbox") as (api_url, _storage):
            daemon = ConvertingDaemon(work / "daemon", api_url)
            try:
                movie_total, movie_converting = daemon.take([movie])
                photo_total, photo_converting = daemon.take([photo])
                burst_total, _ = daemon.take(burst)
            finally:
                peak = daemon.stop()
        rows += [
            Row(
                "convert",
                f"MOV remux, conversion step ({size})",
                movie_converting,
                "s",
                remux_alone,
                movie_converting / remux_alone,
                "≤ 1.2×",
            ),
            Row(
                "convert",
                "MOV remux, drop to sidecar (sniff, hash, convert, upload)",
                movie_total,
                "s",
                remux_alone,
                movie_total / remux_alone,
            ),
            Row(
                "convert",
                f"{args.megapixels:g} MP HEIC → JPEG, conversion step",
                photo_converting,
                "s",
                jpeg_alone,
                photo_converting / jpeg_alone,
                "≤ 1.2×",
            ),
            Row(
                "convert",
                "HEIC, drop to sidecar",
                photo_total,
                "s",
                jpeg_alone,
                photo_total / jpeg_alone,
            ),
            Row(
                "convert",
                f"burst of {args.burst} HEIC ({args.burst_megapixels:g} MP), throughput",
                args.burst / burst_total,
                "files/s",
                burst_alone,
                (args.burst / burst_total) / burst_alone,
            ),
            Row("convert", "burst, daemon's peak RSS", peak, "MB"),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        "| measure (settings: defaults, convert_concurrency 1) | heygen-watcher | tool alone |",
        end="",
    )
    print(" ratio | must |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        baseline = f"{row.baseline:.3f} {row.unit}" if row.baseline is not None else ""
        ratio = f"{row.ratio:.2f}×" if row.ratio is not None else ""
        print(f"| {row.measure} | {row.ours:.3f} {row.unit} | {baseline} | {ratio} | {row.must} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
