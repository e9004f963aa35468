#!/bin/sh
# Regenerates the corpus from real encoders (Debian 12: ffmpeg, lame, sox, imagemagick,
# libheif-examples, webp, libimage-exiftool-perl). The committed files are what the tests use;
# a rerun with other tool versions makes different bytes, so rerun only to add or replace files.
# Each line below that makes a file starts with `run`; README.md lists them.
set -eu
cd "$(dirname "$0")"
SRC=$(mktemp -d)
trap 'rm -rf "$SRC"' EXIT
run() { echo "+ $*" >&2; sh -c "$*"; }
FF="ffmpeg -hide_banner -loglevel error -y -bitexact"
V="-f lavfi -i testsrc=size=64x48:rate=10:duration=0.2"
A="-f lavfi -i sine=frequency=440:sample_rate=8000:duration=0.2"
X264="-c:v libx264 -preset ultrafast -pix_fmt yuv420p"
AAC="-c:a aac -b:a 16k"

# Inputs (not committed)
sox -n -r 22050 -c 1 -b 16 "$SRC/tone.wav" synth 0.3 sine 440
convert -size 200x200 xc: +noise Random -quality 97 "$SRC/cover.jpg"
convert -size 32x24 gradient:red-blue "$SRC/grad.png"

# ISO-BMFF: MP4 of several brands, audio-only, M4A, MOV, 3GP
run "$FF $V $A $X264 $AAC mp4-isom.mp4"
run "$FF $V $A $X264 $AAC -brand mp42 mp4-mp42.mp4"
run "$FF $V $X264 -brand avc1 mp4-avc1.mp4"
run "$FF $V $A $X264 $AAC -f ipod video.m4v"
run "$FF $V $A $X264 $AAC -brand XAVC mp4-xavc.mp4"
run "$FF $V $X264 -brand CAEP mp4-caep.mp4"
run "$FF $V $A $X264 $AAC -brand MSNV mp4-msnv.mp4"
run "$FF $V $A $X264 $AAC -movflags frag_keyframe+empty_moov+default_base_moof mp4-fragmented.mp4"
run "$FF $V $A $X264 $AAC -movflags +faststart mp4-faststart.mp4"
run "$FF $A $AAC mp4-audio-only.mp4"
run "$FF $A $AAC -movflags frag_keyframe+empty_moov+default_base_moof mp4-audio-fragmented.mp4"
run "$FF $A $AAC -f ipod audio.m4a"
run "$FF $V $A $X264 $AAC movie.mov"
run "$FF $V $A -c:v h263 -s 128x96 $AAC -ar 8000 phone.3gp"
# Other containers
run "$FF $V $A $X264 $AAC stream.ts"
run "$FF $V $A $X264 $AAC -f mpegts -mpegts_m2ts_mode 1 camera.m2ts"
run "$FF $V $A -c:v libvpx -b:v 50k -c:a libopus -b:a 16k clip.webm"
run "$FF $V $A -c:v libvpx -b:v 50k -c:a libopus -b:a 16k clip.mkv"

# MP3
run "lame --quiet -b 32 $SRC/tone.wav mp3-cbr-notag.mp3"
run "lame --quiet -V 7 $SRC/tone.wav mp3-vbr-notag.mp3"
run "lame --quiet -b 32 --id3v1-only --tt Tone --ta Watcher $SRC/tone.wav mp3-id3v1.mp3"
run "lame --quiet -b 32 --id3v2-only --tt Tone --ta Watcher $SRC/tone.wav mp3-id3v23.mp3"
run "$FF -i $SRC/tone.wav -c:a libmp3lame -b:a 32k -id3v2_version 4 -metadata title=Tone mp3-id3v24.mp3"
run "lame --quiet -b 32 --add-id3v2 --tt Tone --ti $SRC/cover.jpg $SRC/tone.wav mp3-large-cover.mp3"
# An interrupted copy: the tag claims more bytes than the file holds.
run "head -c 40000 mp3-large-cover.mp3 > mp3-cut-in-tag.mp3"

# WAV
run "sox -n -r 8000 -c 1 -b 16 wav-16bit.wav synth 0.2 sine 440"
run "sox -n -r 8000 -c 1 -b 24 -t wavpcm wav-24bit.wav synth 0.2 sine 440"
run "$FF $A -c:a pcm_s24le wav-24bit-ffmpeg.wav"
run "sox -n -r 8000 -c 1 -e floating-point -b 32 wav-float.wav synth 0.2 sine 440"
run "sox -n -r 8000 -c 4 -b 16 wav-extensible.wav synth 0.1 sine 440"
run "$FF $A -c:a pcm_s16le -rf64 always wav-rf64.wav"

# Images
run "convert $SRC/grad.png -quality 80 jpeg-baseline.jpg"
run "convert $SRC/grad.png -quality 80 -interlace JPEG jpeg-progressive.jpg"
run "convert $SRC/grad.png -quality 80 -colorspace CMYK jpeg-cmyk.jpg"
run "convert $SRC/grad.png -quality 80 -strip jpeg-exif-only.jpg && exiftool -q -overwrite_original -JFIF:all= -Make=Camera -Model=Tiny jpeg-exif-only.jpg"
run "convert $SRC/grad.png PNG24:png-8bit.png"
run "convert $SRC/grad.png -depth 16 PNG48:png-16bit.png"
run "convert $SRC/grad.png -interlace PNG PNG24:png-interlaced.png"
run "convert $SRC/grad.png -colors 16 PNG8:png-palette.png"
run "$FF -f lavfi -i testsrc=size=16x12:rate=5:duration=0.6 -plays 0 -f apng png-animated.apng"
run "convert $SRC/grad.png image.gif"
run "cwebp -quiet -q 60 $SRC/grad.png -o image.webp"
run "heif-enc -q 40 -o image.heic $SRC/grad.png"
run "$FF -i $SRC/grad.png -c:v libaom-av1 -still-picture 1 -pix_fmt yuv420p image.avif"
run "convert $SRC/grad.png -compress lzw image.tif"
