import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from aeops import codec
from aeops.errors import (
    CorruptImageError,
    DecodeError,
    EmptyImageError,
    ImageTooLargeError,
    TruncatedImageError,
    UnknownFormatError,
)
from tests.images import (
    float_tiff,
    gradient,
    jpeg_with_corrupt_exif,
    pil_bytes,
    png16,
    png_header_claiming,
    tiff,
    with_exif_orientation,
)

RGB = gradient()


@pytest.mark.parametrize(
    "fmt, params, exact",
    [
        ("PNG", {}, True),
        ("BMP", {}, True),
        ("TIFF", {}, True),
        ("TIFF", {"compression": "tiff_lzw"}, True),
        ("WEBP", {"lossless": True}, True),
        ("JPEG", {"quality": 95}, False),
        ("WEBP", {"quality": 90}, False),
    ],
)
def test_decodes_every_rgb_format(fmt, params, exact):
    decoded = codec.decode(pil_bytes(Image.fromarray(RGB), fmt, **params))
    assert decoded.dtype == np.uint8 and decoded.shape == RGB.shape
    if exact:
        np.testing.assert_array_equal(decoded, RGB)
    else:
        assert np.abs(decoded.astype(int) - RGB).mean() < 6


@pytest.mark.parametrize("top", [1.0, 255.0, 65535.0], ids=["unit", "8-bit", "16-bit"])
def test_float_tiffs_are_read_by_their_range_not_cast(top):
    """Floats in [0, 1] (what scikit-image and OpenCV write) used to become 0 or 1: a black image."""
    gray = RGB[:, :, 0]
    decoded = codec.decode(float_tiff(gray / 255.0 * top))
    np.testing.assert_array_equal(decoded[:, :, 1], gray)


@pytest.mark.parametrize("values, why", [([[0.5, np.nan]], "NaN"), ([[-1.0, 0.5]], r"span \[-1, 0.5\]"),
                                         ([[0.0, 70000.0]], r"span \[0, 70000\]")])
def test_float_tiffs_that_cannot_be_read_without_guessing_are_corrupt(values, why):
    with pytest.raises(CorruptImageError, match=why):
        codec.decode(float_tiff(np.tile(values, (8, 4))))


@pytest.mark.parametrize("dtype, params", [
    ("float32", {}), ("float64", {}), ("float32", {"compression": "zlib"}), ("float32", {"byteorder": ">"}),
    ("float32", {"tile": (16, 16)}), ("float32", {"bigtiff": True}),
], ids=["f32", "f64", "deflate", "big-endian", "tiled", "bigtiff"])
def test_float_rgb_tiffs_pillow_cannot_open_are_decoded_by_their_range(dtype, params):
    """Pillow has no mode for float colour samples; it called such a file "cannot identify image file", which
    became a dead letter saying the bytes were no image at all."""
    data = tiff((RGB / 255.0).astype(dtype), photometric="rgb", **params)
    np.testing.assert_array_equal(codec.decode(data), RGB)
    assert codec.probe(data) == ("tiff", 32, 24)


def test_float_tiffs_read_by_opencv_keep_the_pixel_limit_grey_64_bit_and_the_range_rules():
    data = tiff((RGB * 257.0).astype(np.float32), photometric="rgb")  # [0, 65535]: 16-bit levels
    np.testing.assert_array_equal(codec.decode(data, max_pixels=768), RGB)
    for read in (codec.decode, codec.probe):
        with pytest.raises(ImageTooLargeError, match="768 pixels exceeds the limit of 767"):
            read(data, max_pixels=767)
    gray = RGB[:, :, 2]
    np.testing.assert_array_equal(codec.decode(tiff(gray.astype(np.float64), photometric="minisblack"))[:, :, 0], gray)
    pages = np.stack([RGB / 255.0, 1 - RGB / 255.0]).astype(np.float32)  # the first page's samples end mid-file
    np.testing.assert_array_equal(codec.decode(tiff(pages, photometric="rgb")), RGB)
    nan = (RGB / 255.0).astype(np.float32)
    nan[3, 4, 1] = np.nan
    with pytest.raises(CorruptImageError, match="NaN"):
        codec.decode(tiff(nan, photometric="rgb"))


def test_a_float_rgb_tiff_turns_by_its_orientation_tag():
    data = tiff((RGB / 255.0).astype(np.float32), photometric="rgb", extratags=[(0x0112, "H", 1, 6, True)])
    np.testing.assert_array_equal(codec.decode(data), DISPLAYED[6](RGB))


@pytest.mark.parametrize("extrasamples", ["unassalpha", "assocalpha", "unspecified"])
def test_float_rgba_tiff_alpha_is_composited_over_white(extrasamples):
    """Straight or premultiplied alpha; an extra sample of unspecified meaning is ignored, as Pillow does."""
    alpha = np.ones(RGB.shape[:2])
    alpha[:, 16:24], alpha[:, 24:] = 0.5, 0.0
    colour = RGB / 255.0 * (alpha[:, :, None] if extrasamples == "assocalpha" else 1)  # premultiplied or not
    data = tiff(np.dstack([colour, alpha]).astype(np.float32), photometric="rgb", extrasamples=[extrasamples])
    decoded = codec.decode(data).astype(int)
    if extrasamples == "unspecified":
        np.testing.assert_array_equal(decoded, RGB)
        return
    np.testing.assert_array_equal(decoded[:, :16], RGB[:, :16])
    assert np.abs(decoded[:, 16:24] - (RGB[:, 16:24] / 2 + 127.5)).max() <= 1
    assert (decoded[:, 24:] == 255).all()


@pytest.mark.parametrize("samples, params, layout", [
    (RGB.astype(np.float16), {"photometric": "rgb"}, "3 x 16-bit float per pixel, photometric 2"),
    (RGB.astype(np.int32), {"photometric": "rgb"}, "3 x 32-bit signed integer per pixel, photometric 2"),
    (RGB.astype(np.uint32), {"photometric": "rgb"}, "3 x 32-bit unsigned integer per pixel, photometric 2"),
    (np.dstack([RGB[:, :, :1], RGB[:, :, :1]]).astype(np.float32), {"photometric": "minisblack", "planarconfig":
     "contig", "extrasamples": ["unassalpha"]}, "2 x 32-bit float per pixel, photometric 1"),
    (np.moveaxis(RGB / 255.0, 2, 0).astype(np.float32), {"photometric": "rgb", "planarconfig": "separate"},
     "3 x 32-bit float per pixel, photometric 2, planar"),  # OpenCV would mix its planes up
], ids=["half-float", "int32-rgb", "uint32-rgb", "grey-alpha-float", "planar-float"])
def test_a_tiff_layout_nothing_reads_is_named_not_called_no_image(samples, params, layout):
    for read in (codec.decode, codec.probe):
        with pytest.raises(UnknownFormatError, match=f"^unsupported TIFF sample layout: {layout} "):
            read(tiff(samples, **params))


def test_a_cut_or_damaged_float_rgb_tiff_is_a_typed_error_and_prints_nothing(capfd):
    data = tiff((RGB / 255.0).astype(np.float32), photometric="rgb", compression="zlib")
    with pytest.raises(TruncatedImageError, match=f"^truncated TIFF image: its samples end at byte {len(data)}, "):
        codec.decode(data[: len(data) // 2])
    start = len(data) // 4  # in the compressed samples: the deflate stream stops making sense
    damaged = data[:start] + bytes(b ^ 0xFF for b in data[start : start + 64]) + data[start + 64 :]
    with pytest.raises(CorruptImageError, match="^corrupt TIFF image: OpenCV could not decode its RGB float samples"):
        codec.decode(damaged)
    assert capfd.readouterr().err == ""  # OpenCV's libtiff messages


def test_library_warnings_are_returned_not_printed(capfd):
    data = jpeg_with_corrupt_exif(RGB)
    image, warned = codec.decode_quietly(data)
    assert image.shape == RGB.shape and warned == ["UserWarning"]
    with warnings.catch_warnings(record=True) as leaked:  # what Python would print, whatever pytest does
        warnings.simplefilter("always")
        codec.decode_quietly(data)
        assert codec.probe(data) == ("jpeg", RGB.shape[1], RGB.shape[0])  # the statistics stage probes each input
    assert leaked == [] and capfd.readouterr().err == ""


def test_threads_decoding_at_once_each_count_their_own_warnings_and_print_none(capfd):
    """The DirectRunner and tf.data decode in several threads. ``catch_warnings`` swapped process-wide state, so
    a thread's warning was counted by another, printed, or swallowed with an unrelated thread's warning."""
    warning, clean = jpeg_with_corrupt_exif(gradient(96, 128)), pil_bytes(Image.fromarray(gradient(96, 128)), "JPEG")
    decoders, rounds, unrelated = 6, 60, 200
    start = threading.Barrier(decoders + 1)

    def decode(thread: int) -> list[list[str]]:
        start.wait()
        return [codec.decode_quietly(warning if (thread + i) % 2 else clean)[1] for i in range(rounds)]

    def warn_elsewhere() -> None:  # a thread that is not decoding: its warnings are Python's to show, as ever
        start.wait()
        for i in range(unrelated):
            warnings.warn(f"not from a decode {i}", RuntimeWarning)

    with warnings.catch_warnings(record=True) as shown:  # what Python would print, whatever pytest does
        warnings.simplefilter("always")
        with ThreadPoolExecutor(decoders + 1) as pool:
            elsewhere = pool.submit(warn_elsewhere)
            counted = list(pool.map(decode, range(decoders)))
            elsewhere.result()
    expected = [[["UserWarning"] if (thread + i) % 2 else [] for i in range(rounds)] for thread in range(decoders)]
    assert counted == expected
    assert sorted(str(w.message) for w in shown) == sorted(f"not from a decode {i}" for i in range(unrelated))
    assert capfd.readouterr().err == ""


def test_gif_palette_becomes_rgb():
    data = pil_bytes(Image.fromarray(RGB).quantize(64), "GIF")
    decoded = codec.decode(data)
    assert decoded.shape == RGB.shape
    assert np.abs(decoded.astype(int) - RGB).mean() < 12


def test_grayscale_is_replicated_to_three_channels():
    gray = RGB[:, :, 0]
    decoded = codec.decode(pil_bytes(Image.fromarray(gray, "L"), "PNG"))
    assert decoded.shape == RGB.shape
    for c in range(3):
        np.testing.assert_array_equal(decoded[:, :, c], gray)


def test_16bit_png_is_scaled_not_clipped():
    rgb16 = RGB.astype(np.uint16) * 257
    np.testing.assert_array_equal(codec.decode(png16(rgb16)), RGB)
    gray16 = rgb16[:, :, 1]
    np.testing.assert_array_equal(codec.decode(png16(gray16))[:, :, 2], RGB[:, :, 1])


def test_16bit_samples_are_scaled_whatever_their_values():
    """A dark 16-bit image holds only values up to 255: still 16-bit levels (near black), not 8-bit ones; and a
    32-bit integer TIFF (Pillow mode ``I``) with values above 255 is read as 16-bit levels, not clipped to white."""
    dark = RGB[:, :, 0].astype(np.uint16)  # 0..255 out of 65535
    np.testing.assert_array_equal(codec.decode(png16(dark))[:, :, 0], np.rint(dark / 257).astype(np.uint8))
    levels = RGB[:, :, 1].astype(np.int32) * 257
    decoded = codec.decode(pil_bytes(Image.fromarray(levels, "I"), "TIFF"))
    np.testing.assert_array_equal(decoded[:, :, 0], RGB[:, :, 1])


def test_alpha_is_composited_over_white():
    rgba = np.dstack([RGB, np.zeros(RGB.shape[:2], np.uint8)])
    rgba[:, :16, 3] = 255
    decoded = codec.decode(pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(decoded[:, :16], RGB[:, :16])
    assert (decoded[:, 16:] == 255).all()


def test_palette_with_transparency_and_cmyk():
    palette = Image.fromarray(RGB).quantize(16)
    palette.info["transparency"] = 0
    assert codec.decode(pil_bytes(palette, "PNG", transparency=0)).shape == RGB.shape
    cmyk = Image.fromarray(RGB).convert("CMYK")
    assert np.abs(codec.decode(pil_bytes(cmyk, "JPEG", quality=95)).astype(int) - RGB).mean() < 8


@pytest.mark.parametrize("orientation, expected", [(1, (24, 32)), (3, (24, 32)), (6, (32, 24)), (8, (32, 24))])
def test_exif_orientation_is_applied(orientation, expected):
    decoded = codec.decode(with_exif_orientation(Image.fromarray(RGB), orientation))
    assert decoded.shape[:2] == expected
    if orientation == 6:  # rotate 90 degrees clockwise to display: the top-left corner goes top-right
        assert np.abs(decoded[0, -1].astype(int) - RGB[0, 0]).sum() < 30


def test_probe_reads_the_header_only():
    assert codec.probe(pil_bytes(Image.fromarray(RGB), "PNG")) == ("png", 32, 24)


@pytest.mark.parametrize(
    "data, error",
    [
        (b"", EmptyImageError),
        (b"this is not an image at all" * 10, UnknownFormatError),
        (bytes(range(256)) * 4, UnknownFormatError),
    ],
)
def test_bad_bytes_raise_typed_errors(data, error):
    with pytest.raises(error) as info:
        codec.decode(data)
    assert info.value.reason and str(info.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_images_are_rejected(fmt):
    big = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    data = pil_bytes(Image.fromarray(big), fmt)
    with pytest.raises(DecodeError) as info:
        codec.decode(data[: len(data) // 2])
    assert isinstance(info.value, (TruncatedImageError, CorruptImageError))


def test_decompression_bomb_is_rejected_before_decoding():
    with pytest.raises(ImageTooLargeError, match="exceeds the limit"):
        codec.decode(png_header_claiming(20_000, 20_000))
    with pytest.raises(ImageTooLargeError):
        codec.decode(png_header_claiming(100_000, 100_000))  # beyond Pillow's own bomb limit too
    with pytest.raises(ImageTooLargeError):
        codec.decode(pil_bytes(Image.fromarray(RGB), "PNG"), max_pixels=100)


@pytest.mark.parametrize("fmt", codec.ENCODINGS)
def test_encode_round_trip(fmt):
    data = codec.encode(RGB, fmt, quality=100)
    decoded = codec.decode(data)
    assert decoded.shape == RGB.shape
    assert np.abs(decoded.astype(int) - RGB).mean() < (0.01 if fmt == "png" else 4)


def test_encode_quality_changes_size_and_is_deterministic():
    noisy = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert len(codec.encode(noisy, "jpeg", 30)) < len(codec.encode(noisy, "jpeg", 95))
    assert codec.encode(noisy, "jpeg", 80) == codec.encode(noisy, "jpeg", 80)


def test_encode_rejects_bad_input():
    with pytest.raises(ValueError):
        codec.encode(RGB, "gif")
    with pytest.raises(ValueError):
        codec.encode(RGB.astype(np.float32), "png")
    for channels in (1, 2, 4):  # OpenCV would write one channel as grey RGB and drop a fourth without a word
        with pytest.raises(ValueError, match=r"expected uint8 \(H, W, 3\)"):
            codec.encode(np.zeros((4, 4, channels), np.uint8), "png")


# Orientation -> the turn a viewer applies (np.rot90 counts counter-clockwise quarter turns).
DISPLAYED = {1: lambda a: a, 3: lambda a: np.rot90(a, 2), 6: lambda a: np.rot90(a, -1), 8: lambda a: np.rot90(a, 1)}


@pytest.mark.parametrize("orientation", sorted(DISPLAYED))
def test_exif_orientation_turns_the_pixels_as_a_viewer_shows_them(orientation):
    decoded = codec.decode(with_exif_orientation(Image.fromarray(RGB), orientation)).astype(int)
    expected = DISPLAYED[orientation](RGB).astype(int)
    assert decoded.shape == expected.shape
    assert np.abs(decoded - expected).mean() < 3  # JPEG q95: a few levels off, never a wrong turn (tens)
    for turn in {1, 3, 6, 8} - {orientation}:
        other = DISPLAYED[turn](RGB)
        assert other.shape != expected.shape or np.abs(decoded - other).mean() > 20


def test_palette_transparency_is_white_and_opaque_entries_keep_their_colour():
    palette = Image.fromarray(RGB).quantize(16)
    indices = np.asarray(palette)
    transparent = int(indices[0, 0])
    colours = np.array(palette.getpalette()[: 3 * 256], np.uint8).reshape(-1, 3)
    decoded = codec.decode(pil_bytes(palette, "PNG", transparency=transparent))
    mask = indices == transparent
    assert mask.any() and (~mask).any()
    assert (decoded[mask] == 255).all()
    np.testing.assert_array_equal(decoded[~mask], colours[indices[~mask]])


def test_probe_reads_only_the_header():
    """A header whose pixels are missing or would take gigabytes still probes: nothing is decoded."""
    assert codec.probe(png_header_claiming(40_000, 30_000), max_pixels=2_000_000_000) == ("png", 40_000, 30_000)
    noise = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    jpeg = pil_bytes(Image.fromarray(noise), "JPEG", quality=90)
    cut = jpeg[: len(jpeg) // 2]  # the header, then half the scan
    assert codec.probe(cut) == ("jpeg", 128, 96)
    with pytest.raises(DecodeError):
        codec.decode(cut)


def test_pixel_limit_counts_pixels_not_samples_and_is_inclusive():
    data = pil_bytes(Image.fromarray(RGB), "PNG")  # 32 x 24 = 768 pixels
    np.testing.assert_array_equal(codec.decode(data, max_pixels=768), RGB)
    assert codec.probe(data, max_pixels=768) == ("png", 32, 24)
    with pytest.raises(ImageTooLargeError, match="768 pixels exceeds the limit of 767"):
        codec.decode(data, max_pixels=767)
    with pytest.raises(ImageTooLargeError):
        codec.probe(data, max_pixels=767)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_cut_jpeg_or_png_is_reported_as_truncated_not_corrupt(fmt):
    """The dead-letter reason tells a cut download (truncated) from damaged bytes (corrupt)."""
    big = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    data = pil_bytes(Image.fromarray(big), fmt)
    with pytest.raises(TruncatedImageError, match=f"^truncated {fmt} image: "):
        codec.decode(data[: len(data) // 2])


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (5, 1)])
def test_one_pixel_wide_images_decode(shape):
    pixels = np.random.default_rng(2).integers(0, 256, (*shape, 3), dtype=np.uint8)
    np.testing.assert_array_equal(codec.decode(pil_bytes(Image.fromarray(pixels), "PNG")), pixels)


def test_png_is_written_at_zlib_default_level():
    """Level 6, the balance of size and time that libpng and Pillow default to; the zlib header's FLEVEL bits say
    which band of levels wrote the stream (0: 0-1, 1: 2-5, 2: 6, 3: 7-9)."""
    data = codec.encode(RGB, "png")
    zlib_flags = data[data.index(b"IDAT") + 5]
    assert zlib_flags >> 6 == 2


def test_encode_defaults_to_jpeg_at_quality_95():
    noisy = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert codec.encode(noisy) == codec.encode(noisy, "jpeg", 95) != codec.encode(noisy, "jpeg", 94)


@pytest.mark.parametrize("fmt, words", [("GIF", "broken data stream"), ("PNG", "unrecognized data stream")])
def test_a_damaged_gif_or_png_stream_is_filed_under_truncated(fmt, words):
    """What the codec does today with Pillow's words for a compressed stream that stops making sense: the
    same reason as a cut file (whether "corrupt" would serve users better is the codec's call)."""
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8))
    data = bytearray(pil_bytes(noise.quantize(64) if fmt == "GIF" else noise, fmt))
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    with pytest.raises(TruncatedImageError, match=words):
        codec.decode(bytes(data))


def test_overlapping_float_tiff_decodes_leave_opencvs_log_level_as_it_was():
    """Two threads' silences overlapping (A in, B in, A out, B out): OpenCV is silent while either decodes
    and speaks again after both, instead of keeping the level B found, A's silence."""
    import cv2

    from aeops.codec import _opencv_silenced

    before = cv2.utils.logging.getLogLevel()
    first, second = _opencv_silenced(), _opencv_silenced()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert cv2.utils.logging.getLogLevel() == cv2.utils.logging.LOG_LEVEL_SILENT  # the second still decodes
    second.__exit__(None, None, None)
    assert cv2.utils.logging.getLogLevel() == before != cv2.utils.logging.LOG_LEVEL_SILENT
