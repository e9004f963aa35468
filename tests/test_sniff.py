"""The bounded readers behind sniffing: broken boxes, lying tags, FIFOs and symlinks."""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

import pytest

from watcher.config import FolderConfig
from watcher.intake import admission as gate
from watcher.intake import sniff
from watcher.intake.admission import Outcome
from watcher.intake.boundedread import MAX_READ, NotRegularFile, open_regular
from watcher.intake.isobmff import MAX_BOXES
from watcher.intake.sniff import SNIFF_BYTES, Sniffed, sniff_path, sniff_reader

CORPUS = Path(__file__).parent / "media" / "corpus"
MP3 = (CORPUS / "mp3-cbr-notag.mp3").read_bytes()  # real MPEG frames, no tag
RULES = FolderConfig(path=Path())


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def ftyp(major: bytes = b"isom", *compatible: bytes) -> bytes:
    return box(b"ftyp", major + b"\0\0\2\0" + b"".join(compatible or (major,)))


def hdlr(handler: bytes) -> bytes:
    return box(b"hdlr", b"\0\0\0\0" + b"\0\0\0\0" + handler + b"\0" * 12 + b"name\0")


def trak(handler: bytes) -> bytes:
    mdia = box(b"mdia", box(b"mdhd", b"\0" * 24) + hdlr(handler))
    return box(b"trak", box(b"tkhd", b"\0" * 84) + mdia)


def sniffed(tmp_path: Path, data: bytes, name: str = "file.bin") -> tuple[Sniffed, int, int]:
    """The verdict on ``data`` written to a file, and how many reads and bytes it took."""
    path = tmp_path / name
    path.write_bytes(data)
    with open_regular(path) as reader:
        found = sniff_reader(reader)
    return found, reader.reads, reader.bytes_read


def syncsafe(size: int) -> bytes:
    return bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))


def id3(body: bytes, version: int = 3, flags: int = 0, size: int | None = None) -> bytes:
    declared = len(body) if size is None else size
    return b"ID3" + bytes((version, 0, flags)) + syncsafe(declared) + body


# -- ISO base media ---------------------------------------------------------------------------
def test_track_handlers_decide_between_video_and_audio(tmp_path: Path):
    movie = ftyp(b"isom", b"isom", b"mp41") + box(b"moov", trak(b"soun") + trak(b"vide"))
    voice = ftyp(b"isom", b"isom", b"mp41") + box(b"moov", trak(b"soun"))
    assert sniffed(tmp_path, movie)[0].content_type == "video/mp4"
    assert sniffed(tmp_path, voice)[0] == Sniffed("audio/mp4", "audio-only MP4")


def test_a_camera_brand_alone_is_mpeg4_video(tmp_path: Path):
    for brand in (b"XAVC", b"CAEP", b"MSNV"):
        data = ftyp(brand, brand) + box(b"moov", trak(b"vide")) + box(b"mdat", b"\0" * 64)
        assert sniffed(tmp_path, data)[0].content_type == "video/mp4", brand


def test_moov_after_a_huge_mdat_is_found_by_seeking(tmp_path: Path):
    """A 5 GB file (sparse) with its moov at the end: found without reading the mdat."""
    path = tmp_path / "long.mp4"
    mdat_size = 5_000_000_000
    with open(path, "wb") as out:
        out.write(ftyp() + struct.pack(">I4sQ", 1, b"mdat", mdat_size))
        out.seek(len(ftyp()) + mdat_size)
        out.write(box(b"moov", trak(b"soun")))
    with open_regular(path) as reader:
        found = sniff_reader(reader)
    assert found.content_type == "audio/mp4"
    assert reader.bytes_read <= SNIFF_BYTES + 1024


def test_every_truncation_of_a_real_mp4_is_judged_without_error(tmp_path: Path):
    data = (CORPUS / "mp4-faststart.mp4").read_bytes()
    for cut in range(0, len(data), 37):
        found = sniffed(tmp_path, data[:cut])[0]
        # Cut inside moov: no readable track list, so the brand speaks (as libmagic would).
        assert found.content_type in ("video/mp4", "application/x-empty"), cut


def test_a_box_claiming_a_huge_size_ends_the_walk(tmp_path: Path):
    claims_exabytes = struct.pack(">I4sQ", 1, b"free", 2**62)
    data = ftyp() + claims_exabytes + box(b"moov", trak(b"soun"))
    found, reads, _ = sniffed(tmp_path, data)
    assert found.content_type == "video/mp4"  # the moov beyond the liar is not reached
    assert reads <= 6
    lying_track = box(b"moov", struct.pack(">I4s", 1 << 30, b"trak") + b"\0" * 32)
    found = sniffed(tmp_path, ftyp() + lying_track)[0]
    assert found.content_type == "application/mp4" and "neither" in found.name


def test_impossible_box_sizes_end_the_walk(tmp_path: Path):
    for header in (struct.pack(">I4s", 3, b"free"), struct.pack(">I4sQ", 1, b"free", 5)):
        found = sniffed(tmp_path, ftyp() + header + box(b"moov", trak(b"soun")))[0]
        assert found.content_type == "video/mp4"


def test_the_number_of_boxes_walked_is_capped(tmp_path: Path):
    data = ftyp() + box(b"free") * 10_000 + box(b"moov", trak(b"soun"))
    found, reads, _ = sniffed(tmp_path, data)
    assert found.content_type == "video/mp4"  # the moov lies beyond the cap
    assert reads <= MAX_BOXES + 4


def test_brands_name_what_is_refused(tmp_path: Path):
    cases = {
        ftyp(b"qt  "): ("video/quicktime", "QuickTime movie"),
        ftyp(b"mif1", b"mif1", b"heic"): ("image/heic", "HEIC image"),
        ftyp(b"mif1", b"mif1", b"avif"): ("image/avif", "AVIF image"),
        ftyp(b"M4A ", b"M4A ", b"isom"): ("audio/mp4", "M4A audio"),
        ftyp(b"3gp5", b"3gp5") + box(b"moov", trak(b"soun")): ("audio/3gpp", "3GPP audio"),
    }
    for data, (content_type, name) in cases.items():
        assert sniffed(tmp_path, data)[0] == Sniffed(content_type, name)


def test_an_unknown_brand_is_left_to_libmagic(tmp_path: Path):
    found = sniffed(tmp_path, ftyp(b"zzzz", b"zzzz") + box(b"mdat", b"\1" * 64))[0]
    assert found.content_type == "application/octet-stream"


# -- ID3 tags -----------------------------------------------------------------------------------
def test_a_tag_bigger_than_the_window_is_skipped(tmp_path: Path):
    data = id3(b"APIC" + b"\x11" * (3 * SNIFF_BYTES)) + MP3
    found, _, bytes_read = sniffed(tmp_path, data)
    assert found == Sniffed("audio/mpeg", "MP3 audio")
    assert bytes_read <= 2 * SNIFF_BYTES + 1024


def test_an_id3_size_past_the_end_is_a_corrupt_tag(tmp_path: Path):
    found = sniffed(tmp_path, id3(b"TIT2" + b"\0" * 100, size=10_000) + MP3[:200])[0]
    assert found.damage is not None
    assert found.damage.startswith("MP3 audio but the tag is corrupt: its ID3v2 tag claims 10010")
    decision = gate.judge_type(found, 10, RULES, "v1-presigned")
    assert decision.outcome is Outcome.REJECT and decision.reason_code == "damaged"


def test_a_size_that_is_not_syncsafe_is_a_corrupt_tag(tmp_path: Path):
    data = b"ID3\x04\x00\x00\x00\x00\x80\x00" + MP3
    assert "not syncsafe" in (sniffed(tmp_path, data)[0].damage or "")


def test_the_v24_footer_is_counted(tmp_path: Path):
    body = b"TIT2\0\0\0\5\0\0\3abcd"
    footer = b"3DI\x04\x00\x10" + syncsafe(len(body))
    data = id3(body, version=4, flags=0x10) + footer + MP3
    assert sniffed(tmp_path, data)[0] == Sniffed("audio/mpeg", "MP3 audio")


def test_stacked_tags_and_padding_are_skipped(tmp_path: Path):
    data = id3(b"TIT2" + b"\0" * 50) + id3(b"TALB" + b"\0" * 20, version=4) + b"\0" * 300 + MP3
    assert sniffed(tmp_path, data)[0].content_type == "audio/mpeg"


def test_tags_with_no_audio_between_them(tmp_path: Path):
    id3v1 = b"TAG" + b"\0" * 125
    found = sniffed(tmp_path, id3(b"TIT2" + b"\0" * 50) + id3v1)[0]
    assert "running past the trailing tags" in (found.damage or "")
    ape_items = b"\0" * 40
    ape_footer = b"APETAGEX" + struct.pack("<IIII", 2000, len(ape_items) + 32, 1, 0) + b"\0" * 8
    found = sniffed(tmp_path, id3(b"TIT2" + b"\0" * 50) + MP3 + ape_items + ape_footer + id3v1)[0]
    assert found.content_type == "audio/mpeg" and found.damage is None


def test_a_tag_followed_by_something_else(tmp_path: Path):
    found = sniffed(tmp_path, id3(b"TIT2" + b"\0" * 50) + b"plain words, not audio\n" * 40)[0]
    assert found.damage is not None and "no MPEG audio frame" in found.damage
    assert "cut short" in (sniffed(tmp_path, b"ID3\x03")[0].damage or "")


# -- other kinds --------------------------------------------------------------------------------
def test_transport_streams_of_each_packet_size(tmp_path: Path):
    for packet, offset in ((188, 0), (192, 4), (204, 0)):
        data = bytearray(os.urandom(packet * 10))
        for start in range(offset, len(data), packet):
            data[start] = 0x47
        assert sniffed(tmp_path, bytes(data))[0].name == "MPEG transport stream", packet


def test_unknown_bytes_have_no_name(tmp_path: Path):
    found = sniffed(tmp_path, b"\x00\x01\x02\x03" * 64)[0]
    assert found == Sniffed("application/octet-stream", "")


# -- opening only regular files -----------------------------------------------------------------
def test_a_fifo_named_mp3_is_never_opened_blocking(tmp_path: Path):
    fifo = tmp_path / "song.mp3"
    os.mkfifo(fifo)
    results: list[object] = []

    def judge() -> None:
        try:
            results.append(gate.classify(fifo, fifo.lstat(), RULES, "v1-presigned"))
        except Exception as error:  # reported below
            results.append(error)

    worker = threading.Thread(target=judge, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():
        # A blocking open waits for a writer: be that writer so the thread can end.
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("opening the FIFO blocked")
    decision = results[0]
    assert isinstance(decision, gate.Decision)
    assert decision.outcome is Outcome.SKIP and decision.reason == "FIFO (not a regular file)"


def test_a_symlink_is_not_followed(tmp_path: Path):
    target = tmp_path / "real.mp4"
    target.write_bytes((CORPUS / "mp4-isom.mp4").read_bytes())
    link = tmp_path / "link.mp4"
    link.symlink_to(target)
    with pytest.raises(NotRegularFile, match="symbolic link"):
        sniff_path(link)
    decision = gate.classify(link, target.stat(), RULES, "v1-presigned")
    assert decision.outcome is Outcome.SKIP and "symbolic link" in decision.reason


def test_a_folder_or_device_is_not_read(tmp_path: Path):
    with pytest.raises(NotRegularFile, match="folder"):
        sniff_path(tmp_path)
    with pytest.raises(NotRegularFile, match="device"):
        sniff_path(Path("/dev/zero"))


def test_reads_are_capped_in_size(tmp_path: Path):
    path = tmp_path / "big.bin"
    path.write_bytes(b"\1" * (MAX_READ * 3))
    with open_regular(path) as reader:
        assert len(reader.read_at(0, MAX_READ * 3)) == MAX_READ
        assert reader.read_at(reader.size, 10) == b"" and reader.read_at(-1, 10) == b""


def test_each_thread_has_its_own_cookies():
    cookies: list[object] = []
    both_alive = threading.Barrier(2)  # so that no object id can be reused between them

    def take() -> None:
        cookies.extend((sniff._mime_cookie(), sniff._text_cookie()))
        both_alive.wait(timeout=30)

    threads = [threading.Thread(target=take) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(cookie) for cookie in cookies}) == 4
    assert sniff._mime_cookie() is sniff._mime_cookie()  # and a thread keeps its own
