#!/usr/bin/env python3
"""Write the image set the ingest and imaging tests use.

Usage:
    .venv/bin/python3 scripts/test-images/make.py OUTDIR [--photos N]

OUTDIR gets one file per edge case the derivative code must survive, and
OUTDIR/manifest.json, which says for every file name what the tests should expect:

    {"rotated-6.jpg": {"kind": "exif-orientation-6", "expected": "image",
                       "width": 400, "height": 600, ...}, ...}

- kind      what the file is there to exercise
- expected  "image" (derivatives expected), "corrupt" (an image format libvips
            recognises, but decoding must fail) or "notImage" (no loader should claim it)
- width, height  of the picture as a viewer shows it, i.e. after EXIF orientation
            (null unless expected is "image")
- optional: orientation, captureDate ("YYYY-MM-DDTHH:MM:SS"), alpha, frames, colour
            (the first frame's colour, for animations), mode (Pillow mode written)

The edge cases: EXIF orientation 6 and 3, PNG, WebP and TIFF with alpha, a CMYK JPEG without
an ICC profile, animated GIF and WebP (first frame red, then green, then blue), 1x1 PNG,
a 10000x100 panorama, a truncated JPEG (first half of a real photo), a zero-byte
empty.jpg, a text file named notes.jpg, TIFF, WebP, AVIF, greyscale, and names with
spaces, unicode, '#' and '%'. The 200 MB random file is not written here: tests make it.

--photos N also writes N distinct real photographs (photo-NNNN-*.ext) for the bench and
bulk ingest tests, taken from Debian's wallpapers in /usr/share/backgrounds
(gnome-backgrounds, mate-backgrounds; SVGs skipped): first the originals byte for byte,
then crops of them, scaled and re-encoded as JPEG, WebP or PNG, until N files exist.

Everything is deterministic: the same Pillow version writes the same bytes on every run
(variants draw their crop and encoding from a random generator seeded with the source
name and variant number). Needs Pillow (scripts/test-images/requirements.txt; scripts/setup
installs it into .venv).
"""

import argparse
import hashlib
import io
import json
import os
import random
import sys

from PIL import Image, ImageDraw, ImageOps

BACKGROUNDS = "/usr/share/backgrounds"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")

# EXIF tag numbers (TIFF/EXIF 2.3): Orientation lives in IFD0, DateTimeOriginal in the
# Exif sub-IFD that IFD0's ExifOffset tag points at.
TAG_ORIENTATION = 0x0112
TAG_DATETIME = 0x0132
TAG_EXIF_IFD = 0x8769
TAG_DATETIME_ORIGINAL = 0x9003


def scene(width, height, seed=0):
    """A busy, deterministic RGB picture: gradients, shapes and noise, so that JPEG
    compresses it like a photo (no long runs) and every corner looks different, which
    makes rotation mistakes visible."""
    image = Image.new("RGB", (width, height))
    gradient = Image.linear_gradient("L").resize((width, height))
    other = gradient.transpose(Image.Transpose.ROTATE_90).resize((width, height))
    noise = Image.effect_noise((width, height), 40 + seed % 20)
    image = Image.merge("RGB", (gradient, other, noise))
    draw = ImageDraw.Draw(image)
    rng = random.Random(f"scene:{width}x{height}:{seed}")
    for _ in range(12):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(1, width // 2 + 2), y0 + rng.randrange(1, height // 2 + 2)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    # A white marker in the stored top-left corner: after orientation 6 it must end up
    # at the top right.
    draw.rectangle((0, 0, max(1, width // 8), max(1, height // 8)), fill=(255, 255, 255))
    return image


def exif_bytes(orientation=None, original=None, plain=None):
    exif = Image.Exif()
    if orientation is not None:
        exif[TAG_ORIENTATION] = orientation
    if plain is not None:
        exif[TAG_DATETIME] = plain
    if original is not None:
        exif.get_ifd(TAG_EXIF_IFD)[TAG_DATETIME_ORIGINAL] = original
    return exif.tobytes()


class Writer:
    def __init__(self, outdir):
        self.outdir = outdir
        self.manifest = {}

    def add(self, name, data, kind, expected, width=None, height=None, **extra):
        with open(os.path.join(self.outdir, name), "wb") as f:
            f.write(data)
        entry = {"kind": kind, "expected": expected, "width": width, "height": height}
        entry.update(extra)
        self.manifest[name] = entry

    def image(self, name, image, kind, shown=None, **save):
        """Encode `image` with Pillow's `save` options; `shown` is the (width, height)
        after orientation when it differs from the stored size."""
        buffer = io.BytesIO()
        image.save(buffer, **save)
        width, height = shown or image.size
        self.add(name, buffer.getvalue(), kind, "image", width, height)
        return buffer.getvalue()


def edge_cases(w):
    w.image("rotated-6.jpg", scene(600, 400, 1), "exif-orientation-6", shown=(400, 600),
            format="JPEG", quality=90,
            exif=exif_bytes(orientation=6, original="2021:07:14 09:30:00", plain="2022:01:01 00:00:00"))
    w.manifest["rotated-6.jpg"].update(orientation=6, captureDate="2021-07-14T09:30:00")

    w.image("rotated-3.jpg", scene(500, 300, 2), "exif-orientation-3",
            format="JPEG", quality=90, exif=exif_bytes(orientation=3, plain="2019:02:03 04:05:06"))
    w.manifest["rotated-3.jpg"].update(orientation=3, captureDate="2019-02-03T04:05:06")

    rgba = scene(400, 300, 3).convert("RGBA")
    mask = Image.new("L", rgba.size, 0)
    ImageDraw.Draw(mask).ellipse((40, 30, 360, 270), fill=255)
    rgba.putalpha(mask)
    w.image("alpha.png", rgba, "alpha", format="PNG")
    w.manifest["alpha.png"].update(alpha=True)
    w.image("alpha.webp", rgba, "alpha", format="WEBP", quality=80)
    w.manifest["alpha.webp"].update(alpha=True)
    # Its preview is a JPEG: transparent areas must come out white, not black.
    w.image("alpha.tiff", rgba, "alpha", format="TIFF", compression="tiff_deflate")
    w.manifest["alpha.tiff"].update(alpha=True)

    # Pillow writes CMYK JPEGs with an Adobe marker and no ICC profile, the case in which
    # libvips must fall back to its built-in CMYK profile.
    w.image("cmyk.jpg", scene(400, 300, 4).convert("CMYK"), "cmyk", format="JPEG", quality=90)
    w.manifest["cmyk.jpg"].update(mode="CMYK")

    frames = [Image.new("RGB", (200, 150), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    for i, frame in enumerate(frames):
        ImageDraw.Draw(frame).text((10, 10), f"frame {i}", fill=(255, 255, 255))
    w.image("animated.gif", frames[0], "animated", format="GIF", save_all=True,
            append_images=frames[1:], duration=200, loop=0)
    w.manifest["animated.gif"].update(frames=3, colour="#ff0000")
    w.image("animated.webp", frames[0], "animated", format="WEBP", save_all=True,
            append_images=frames[1:], duration=200, loop=0, lossless=True)
    w.manifest["animated.webp"].update(frames=3, colour="#ff0000")

    w.image("one-pixel.png", Image.new("RGB", (1, 1), (10, 120, 200)), "tiny", format="PNG")
    w.image("panorama.jpg", scene(10000, 100, 5), "panorama", format="JPEG", quality=85)
    w.image("grey.jpg", scene(300, 200, 6).convert("L"), "greyscale", format="JPEG", quality=90)
    w.manifest["grey.jpg"].update(mode="L")
    w.image("image.tiff", scene(300, 200, 7), "tiff", format="TIFF", compression="tiff_deflate")
    w.image("photo.webp", scene(640, 480, 8), "webp", format="WEBP", quality=80)
    w.image("photo.avif", scene(320, 240, 9), "avif", format="AVIF", quality=60)

    # The first half of a real photo when the wallpapers are installed, else of a scene.
    real = sorted(p for p in backgrounds() if p.endswith(".jpg"))
    if real:
        with open(real[0], "rb") as f:
            whole = f.read()
    else:
        buffer = io.BytesIO()
        scene(1600, 1200, 10).save(buffer, format="JPEG", quality=90)
        whole = buffer.getvalue()
    w.add("truncated.jpg", whole[: len(whole) // 2], "truncated", "corrupt")

    w.add("empty.jpg", b"", "empty", "notImage")
    w.add("notes.jpg", b"Shopping list\n- milk\n- eggs\n\nNot a picture, despite the name.\n",
          "text", "notImage")

    for name, seed in (("with space.jpg", 11), ("café é.jpg", 12), ("日本の写真.jpg", 13),
                       ("hash#1.jpg", 14), ("100% done.jpg", 15)):
        w.image(name, scene(320, 200, seed), "name", format="JPEG", quality=85)


def backgrounds():
    found = []
    for root, _, files in os.walk(BACKGROUNDS):
        for name in files:
            if name.lower().endswith(PHOTO_SUFFIXES):
                found.append(os.path.join(root, name))
    # JPEGs first: most of them are photographs; the WebP and PNG wallpapers are renders.
    return sorted(found, key=lambda p: (not p.lower().endswith((".jpg", ".jpeg")), p))


def shown_size(image):
    width, height = image.size
    if image.getexif().get(TAG_ORIENTATION) in (5, 6, 7, 8):
        return height, width
    return width, height


def photos(w, count):
    sources = backgrounds()
    if count > 0 and not sources:
        sys.exit(f"make.py: --photos needs wallpapers in {BACKGROUNDS} (apt install gnome-backgrounds mate-backgrounds)")
    seen = set()
    originals = []
    for path in sources:
        with open(path, "rb") as f:
            data = f.read()
        digest = hashlib.sha256(data).digest()
        if digest in seen:
            continue
        seen.add(digest)
        originals.append((path, data))

    written = 0
    for path, data in originals[:count]:
        written += 1
        name = f"photo-{written:04d}-{os.path.basename(path)}"
        with Image.open(io.BytesIO(data)) as image:
            width, height = shown_size(image)
        w.add(name, data, "photo", "image", width, height)

    # Variants: source i gets variants i, i + len, i + 2*len…, so each source is decoded
    # once however many variants it feeds.
    missing = count - written
    per_source = [missing // len(originals) + (1 if i < missing % len(originals) else 0)
                  for i in range(len(originals))] if missing > 0 else []
    for i, n in enumerate(per_source):
        if n == 0:
            continue
        path, data = originals[i]
        with Image.open(io.BytesIO(data)) as opened:
            source = ImageOps.exif_transpose(opened).convert("RGB")
        stem = os.path.splitext(os.path.basename(path))[0]
        for k in range(n):
            number = written + 1 + i + k * len(originals)
            rng = random.Random(f"variant:{os.path.basename(path)}:{k}")
            while True:
                encoded, suffix, size = variant(source, rng)
                digest = hashlib.sha256(encoded).digest()
                if digest not in seen:
                    break
            seen.add(digest)
            w.add(f"photo-{number:04d}-{stem}-v{k + 1}.{suffix}", encoded, "photo-variant", "image", *size)


def variant(source, rng):
    """A crop of 40–100 % of each side at a random place, scaled so its long edge is
    640–2400 px (never enlarged), encoded as JPEG (70 %), WebP (20 %) or PNG (10 %)."""
    sw, sh = source.size
    cw = max(16, int(sw * rng.uniform(0.4, 1.0)))
    ch = max(16, int(sh * rng.uniform(0.4, 1.0)))
    x, y = rng.randrange(sw - cw + 1), rng.randrange(sh - ch + 1)
    crop = source.crop((x, y, x + cw, y + ch))
    edge = rng.randrange(640, 2401)
    scale = min(1.0, edge / max(cw, ch))
    if scale < 1.0:
        crop = crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    pick = rng.random()
    if pick < 0.7:
        crop.save(buffer, format="JPEG", quality=rng.randrange(70, 96), optimize=rng.random() < 0.5)
        suffix = "jpg"
    elif pick < 0.9:
        crop.save(buffer, format="WEBP", quality=rng.randrange(60, 91))
        suffix = "webp"
    else:
        crop.save(buffer, format="PNG", compress_level=6)
        suffix = "png"
    return buffer.getvalue(), suffix, crop.size


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir")
    parser.add_argument("--photos", type=int, default=0, metavar="N",
                        help="also write N distinct real photos made from /usr/share/backgrounds")
    args = parser.parse_args()
    if args.photos < 0:
        parser.error("--photos must be 0 or more")
    os.makedirs(args.outdir, exist_ok=True)
    w = Writer(args.outdir)
    edge_cases(w)
    photos(w, args.photos)
    with open(os.path.join(args.outdir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(w.manifest, f, indent=1, ensure_ascii=False, sort_keys=True)
        f.write("\n")
    print(f"make.py: {len(w.manifest)} files in {args.outdir}")


if __name__ == "__main__":
    main()
