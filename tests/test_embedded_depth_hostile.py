"""Hostile and malformed photos with embedded depth: every one is refused with a clear
EmbeddedDepthError (a MagicBokehError) before it costs memory, so callers can fall back."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from embedded_depth_files import (
    MAIN,
    billion_laughs,
    dynamic_depth_file,
    ext_chunk,
    gdepth_file,
    insert_segments,
    jpeg,
    png,
    segment,
    xmp_main,
)
from magicbokeh.depth.embedded import EmbeddedDepthError, read_embedded_depth
from magicbokeh.errors import MagicBokehError


def _scene(h=48, w=64):
    return (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)


def _depth_png(h=48, w=64):
    return png((np.random.default_rng(1).random((h, w)) * 255).astype(np.uint8))  # incompressible


def _gdepth_pieces(chunk=500):
    """(primary with main XMP only, list of extended chunk segments, GUID)."""
    full, extended, guid = gdepth_file(jpeg(_scene()), _depth_png(), None, chunk=chunk)
    main = segment(MAIN + xmp_main('GDepth:Format="RangeInverse" GDepth:Near="1" GDepth:Far="9"', guid))
    chunks = [ext_chunk(guid, len(extended), o, extended[o : o + chunk]) for o in range(0, len(extended), chunk)]
    return main, chunks, guid, extended


def _build(main, chunks):
    return insert_segments(jpeg(_scene()), [main, *chunks])


def test_the_well_formed_pieces_read():
    main, chunks, _, _ = _gdepth_pieces()
    assert len(chunks) > 3 and read_embedded_depth(_build(main, chunks)).format == "gdepth"


def test_error_type_is_a_magicbokeh_error():
    assert issubclass(EmbeddedDepthError, MagicBokehError)


def test_billion_laughs_in_the_main_packet():
    packet = billion_laughs() + xmp_main('GDepth:Format="&lol9;" GDepth:Near="1" GDepth:Far="9"').decode()
    data = insert_segments(jpeg(_scene()), [segment(MAIN + packet.encode())])
    with pytest.raises(EmbeddedDepthError, match="DTDs or entities"):
        read_embedded_depth(data)


def test_billion_laughs_in_the_extended_packet():
    main, _, _, _ = _gdepth_pieces()
    bomb = (billion_laughs() + xmp_main('GDepth:Data="&lol9;"').decode()).encode()
    from embedded_depth_files import md5_guid

    guid = md5_guid(bomb)
    main = segment(MAIN + xmp_main('GDepth:Format="RangeInverse" GDepth:Near="1" GDepth:Far="9"', guid))
    with pytest.raises(EmbeddedDepthError, match="DTDs or entities"):
        read_embedded_depth(_build(main, [ext_chunk(guid, len(bomb), 0, bomb)]))


def test_oversized_base64_field_is_refused_before_decoding(monkeypatch):
    import magicbokeh.depth.embedded.convert as convert

    main, chunks, _, extended = _gdepth_pieces()
    field_chars = len(extended)  # the GDepth:Data string is most of the packet
    monkeypatch.setattr(convert, "MAX_BASE64_CHARS", field_chars // 2)

    def never(*a, **k):
        raise AssertionError("base64 was decoded despite the limit")

    monkeypatch.setattr(convert.base64, "b64decode", never)
    with pytest.raises(EmbeddedDepthError, match=r"GDepth:Data is \d+ characters of base64 \(limit"):
        read_embedded_depth(_build(main, chunks))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header_only(width, height):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)  # far too little data for the declared size
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def test_decompression_bomb_depth_map_is_refused_from_its_header():
    bomb = _png_header_only(100_000, 100_000)  # 10 gigapixels declared, a few bytes stored
    data, _, _ = gdepth_file(jpeg(_scene()), bomb, None)
    with pytest.raises(EmbeddedDepthError, match="100000x100000 pixels \\(limit"):
        read_embedded_depth(data)


def test_truncated_extended_xmp_missing_chunk():
    main, chunks, _, _ = _gdepth_pieces()
    with pytest.raises(EmbeddedDepthError, match="incomplete"):
        read_embedded_depth(_build(main, chunks[:2] + chunks[3:]))
    with pytest.raises(EmbeddedDepthError, match="incomplete"):
        read_embedded_depth(_build(main, chunks[:-1]))


def test_out_of_bounds_chunk():
    main, chunks, guid, extended = _gdepth_pieces()
    rogue = ext_chunk(guid, len(extended), len(extended) - 10, b"x" * 500)
    with pytest.raises(EmbeddedDepthError, match="outside the packet"):
        read_embedded_depth(_build(main, chunks + [rogue]))


def test_oversized_extended_total(monkeypatch):
    import magicbokeh.depth.embedded.xmp as xmp

    main, chunks, _, extended = _gdepth_pieces()
    monkeypatch.setattr(xmp, "MAX_EXTENDED_XMP_BYTES", len(extended) - 1)
    with pytest.raises(EmbeddedDepthError, match="declares \\d+ bytes \\(limit"):
        read_embedded_depth(_build(main, chunks))


def test_mismatched_guid():
    main, chunks, guid, extended = _gdepth_pieces()
    other = "F" * 32 if guid != "F" * 32 else "E" * 32
    renamed = [ext_chunk(other, len(extended), o, extended[o : o + 500]) for o in range(0, len(extended), 500)]
    with pytest.raises(EmbeddedDepthError, match="GUID"):
        read_embedded_depth(_build(main, renamed))
    bad_main = segment(MAIN + xmp_main('GDepth:Format="RangeInverse" GDepth:Near="1" GDepth:Far="9"', "not-a-guid"))
    with pytest.raises(EmbeddedDepthError, match="32-digit GUID"):
        read_embedded_depth(_build(bad_main, chunks))


def test_jpeg_segment_past_the_end_of_file():
    main, chunks, _, _ = _gdepth_pieces()
    data = _build(main, chunks)
    start = data.find(b"\xff\xe1", 2)
    cut = data[: start + 200]  # the first APP1 segment now runs past the end
    with pytest.raises(EmbeddedDepthError, match="past the end of the file"):
        read_embedded_depth(cut)


def _ddf(depth_len_field, items):
    extended = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:Container="http://ns.google.com/photos/dd/1.0/container/"'
        ' xmlns:Item="http://ns.google.com/photos/dd/1.0/item/"'
        ' xmlns:Camera="http://ns.google.com/photos/dd/1.0/camera/"'
        ' xmlns:Depth="http://ns.google.com/photos/dd/1.0/depthmap/">'
        '<Container:Directory><rdf:Seq>'
        '<rdf:li><Container:Item Item:Mime="image/jpeg" Item:Length="0" Item:DataURI="primary"/></rdf:li>'
        f'<rdf:li><Container:Item Item:Mime="image/png" Item:Length="{depth_len_field}" Item:DataURI="d"/></rdf:li>'
        '</rdf:Seq></Container:Directory>'
        '<Camera:DepthMap Depth:Format="RangeLinear" Depth:Near="1" Depth:Far="5" Depth:DepthURI="d"/>'
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    return dynamic_depth_file(jpeg(_scene()), extended, xmp_main("", guid="0" * 32).decode(), items)


def test_dynamic_depth_item_bounds():
    depth = _depth_png()
    assert read_embedded_depth(_ddf(len(depth), [depth])).format == "dynamic-depth"
    with pytest.raises(EmbeddedDepthError, match="beyond the file"):
        read_embedded_depth(_ddf(10**8, [depth]))
    with pytest.raises(EmbeddedDepthError, match="does not start with a image/png header"):
        read_embedded_depth(_ddf(len(depth) - 5, [depth]))
    with pytest.raises(EmbeddedDepthError, match="not an integer"):
        read_embedded_depth(_ddf("12abc", [depth]))
    with pytest.raises(EmbeddedDepthError, match="limit"):
        read_embedded_depth(_ddf(2**40, [depth]))


def test_truncated_heic_is_a_clear_error():
    pytest.importorskip("pillow_heif")
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_scene()).save(buf, format="HEIF")
    with pytest.raises(EmbeddedDepthError, match="HEIC"):
        read_embedded_depth(buf.getvalue()[:200])
