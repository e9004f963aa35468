"""FFmpeg as a subprocess: finding it, asking its version, probing a file, running a job.

Which binary: a path named by the configuration, else ``ffmpeg`` on PATH (the system's
package), else the one the ``imageio-ffmpeg`` wheel bundles (``pip install
heygen-watcher[convert]``). A probe uses ``ffprobe`` beside the chosen ffmpeg when there is
one, else reads what ``ffmpeg -i`` prints (the bundled build ships no ffprobe).

Every job runs in its own process group at a low priority (nice, and idle I/O where
``ionice`` exists), with a timeout after which the whole group is killed; `Jobs.stop` kills
whatever still runs when the daemon stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

# How much of ffmpeg's complaint a reason keeps.
REASON_CHARS = 240
PROBE_TIMEOUT_SECONDS = 30.0
NICENESS = 10


class ConverterMissing(Exception):
    """No converter for this kind of file is installed: the reason says what to install."""


class ConversionFailed(Exception):
    """The tool refused the file or gave up on it; the message is its reason, in one line."""


class ConversionTimedOut(ConversionFailed):
    pass


class ConversionStopped(Exception):
    """The daemon is stopping: the conversion was cut short, to be done again at the next
    start (nothing is wrong with the file)."""


@dataclass(frozen=True)
class Stream:
    kind: str  # "video", "audio", "subtitle", "data"
    codec: str
    width: int | None = None
    height: int | None = None
    # Audio: how samples are stored (ffmpeg's name: s16, s32p, fltp…); deeper than 16 bits
    # is kept when the sound goes to WAV.
    sample_format: str | None = None
    bits: int | None = None

    @property
    def deep(self) -> bool:
        return (self.bits or 0) > 16 or (self.sample_format or "").startswith("s32")


@dataclass(frozen=True)
class MediaInfo:
    streams: tuple[Stream, ...]
    duration: float | None

    def of(self, kind: str) -> list[Stream]:
        return [stream for stream in self.streams if stream.kind == kind]


@dataclass(frozen=True)
class Tool:
    """The ffmpeg in use, and its ffprobe if it has one."""

    ffmpeg: str
    ffprobe: str | None
    version: str
    origin: str  # "configured", "system" or "bundled"


def find_tool(configured: str | None) -> Tool:
    """The ffmpeg to use (see the module's doc); `ConverterMissing` when there is none."""
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise ConverterMissing(f"the configured ffmpeg {configured!r} was not found")
        return _tool(found, "configured")
    found = shutil.which("ffmpeg")
    if found is not None:
        return _tool(found, "system")
    try:
        import imageio_ffmpeg  # type: ignore[import-untyped]
    except ImportError:
        raise ConverterMissing(
            "no ffmpeg: install the system package (Debian/Ubuntu: apt-get install ffmpeg) "
            "or `pip install 'heygen-watcher[convert]'`"
        ) from None
    return _tool(str(imageio_ffmpeg.get_ffmpeg_exe()), "bundled")


def _tool(ffmpeg: str, origin: str) -> Tool:
    beside = Path(ffmpeg).with_name("ffprobe")
    ffprobe = str(beside) if os.access(beside, os.X_OK) else None
    if ffprobe is None and origin == "system":
        ffprobe = shutil.which("ffprobe")
    try:
        done = subprocess.run(
            [ffmpeg, "-hide_banner", "-version"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ConverterMissing(f"{ffmpeg} does not run: {error}") from None
    first = done.stdout.splitlines()[0] if done.stdout else ""
    match = re.match(r"ffmpeg version (\S+)", first)
    return Tool(ffmpeg, ffprobe, match.group(1) if match else "unknown", origin)


class Jobs:
    """The tool's processes now running, each in its own group: bounded, timed, killable."""

    def __init__(self) -> None:
        self._running: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self._prefix = _low_priority_prefix()

    def run(self, args: list[str], timeout: float) -> str:
        """Run one command; what it printed on success, else `ConversionFailed` with its
        reason."""
        returncode, out, err = self.execute(args, timeout)
        if returncode < 0:
            raise ConversionFailed(f"{Path(args[0]).name} was killed (signal {-returncode})")
        if returncode != 0:
            raise ConversionFailed(last_line(err) or f"{Path(args[0]).name} exited {returncode}")
        return out

    def execute(self, args: list[str], timeout: float) -> tuple[int, str, str]:
        """Run one command: its exit status, its output and its complaints. Killed with its
        group after ``timeout`` (`ConversionTimedOut`)."""
        with self._lock:
            if self._stopped:
                raise ConversionStopped("the daemon is stopping")
            process = subprocess.Popen(
                [*self._prefix, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own group: a kill reaches every child it made
            )
            self._running.add(process)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.communicate()
            raise ConversionTimedOut(f"took longer than {timeout:g}s; stopped") from None
        finally:
            with self._lock:
                self._running.discard(process)
                stopped = self._stopped
        if stopped:
            raise ConversionStopped("the daemon is stopping")
        return process.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def stop(self) -> None:
        """Kill every job's process group; no new job starts."""
        with self._lock:
            self._stopped = True
            running = list(self._running)
        for process in running:
            _kill_group(process)


def _low_priority_prefix() -> list[str]:
    """Run the tool niced, at idle I/O priority, and killed if the daemon dies (`kill -9`):
    its own process group keeps it from the daemon's signals, this keeps it from outliving
    the daemon. Each part only where the machine has the program for it."""
    prefix = []
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        prefix += [setpriv, "--pdeathsig", "KILL", "--"]
    nice = shutil.which("nice")
    if nice is not None:
        prefix += [nice, "-n", str(NICENESS)]
    ionice = shutil.which("ionice")
    if ionice is not None:
        prefix += [ionice, "-c", "3"]
    return prefix


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def last_line(text: str) -> str:
    """The tool's last word, in one line: what a reason quotes."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:REASON_CHARS] if lines else ""


def probe(tool: Tool, jobs: Jobs, path: Path) -> MediaInfo:
    """The streams and duration of a file; `ConversionFailed` when the tool cannot read it
    (its reason without the file's path, which the sidecar names already)."""
    try:
        return _probe(tool, jobs, path)
    except ConversionTimedOut:
        raise
    except ConversionFailed as failure:
        raise ConversionFailed(str(failure).replace(f"{path}: ", "")) from None


def _probe(tool: Tool, jobs: Jobs, path: Path) -> MediaInfo:
    if tool.ffprobe is not None:
        output = jobs.run(
            [
                tool.ffprobe,
                "-v",
                "error",
                "-print_format",
                "json",
                "-show_streams",
                "-show_format",
                str(path),
            ],
            PROBE_TIMEOUT_SECONDS,
        )
        return _from_ffprobe(output)
    # `ffmpeg -i` with no output always exits 1; what it printed first is the description.
    _, _, text = jobs.execute(
        [tool.ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)], PROBE_TIMEOUT_SECONDS
    )
    info = parse_description(text)
    if info is None:
        raise ConversionFailed(last_line(text) or "ffmpeg could not read the file")
    return info


def _from_ffprobe(output: str) -> MediaInfo:
    start = output.find("{")
    try:
        document = json.loads(output[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
        raise ConversionFailed("ffprobe gave no readable description") from None
    streams = tuple(
        Stream(
            str(item.get("codec_type", "")),
            str(item.get("codec_name", "")),
            item.get("width"),
            item.get("height"),
            item.get("sample_fmt"),
            int(item.get("bits_per_raw_sample") or 0) or None,
        )
        for item in document.get("streams", [])
    )
    duration = document.get("format", {}).get("duration")
    return MediaInfo(streams, float(duration) if duration not in (None, "N/A") else None)


_STREAM = re.compile(r"Stream #\d+:\d+\S*: (Video|Audio|Subtitle|Data): ([A-Za-z0-9_]+)(.*)")
_SAMPLE_FORMAT = re.compile(r", (u8|s16|s32|s64|flt|dbl)p? ?(?:\((\d+) bit\))?")
_SIZE = re.compile(r", (\d{2,5})x(\d{2,5})[ ,\[]")
_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")


def parse_description(text: str) -> MediaInfo | None:
    """What ``ffmpeg -i`` printed, as a probe; None when it described no input."""
    if "Input #0" not in text:
        return None
    streams = []
    for match in _STREAM.finditer(text):
        details = match.group(3) + " "
        size = _SIZE.search(details)
        sample = _SAMPLE_FORMAT.search(details) if match.group(1) == "Audio" else None
        streams.append(
            Stream(
                match.group(1).lower(),
                match.group(2),
                int(size.group(1)) if size else None,
                int(size.group(2)) if size else None,
                sample.group(1) if sample else None,
                int(sample.group(2)) if sample and sample.group(2) else None,
            )
        )
    found = _DURATION.search(text)
    duration = None
    if found is not None:
        hours, minutes, seconds = found.groups()
        duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return MediaInfo(tuple(streams), duration)
