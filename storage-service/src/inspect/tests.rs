use super::synthetic;
use super::*;

const CAP: u64 = 100_000_000;

struct Fixture {
    name: &'static str,
    bytes: &'static [u8],
    image_type: ImageType,
    width: u32,
    height: u32,
}

macro_rules! fixture {
    ($name:literal, $t:ident, $w:literal, $h:literal) => {
        Fixture {
            name: $name,
            bytes: include_bytes!(concat!("../../tests/fixtures/", $name)),
            image_type: ImageType::$t,
            width: $w,
            height: $h,
        }
    };
}

fn fixtures() -> Vec<Fixture> {
    vec![
        fixture!("tiny.jpg", Jpeg, 24, 16),
        fixture!("progressive.jpg", Jpeg, 40, 30),
        fixture!("exif-thumb.jpg", Jpeg, 32, 24),
        fixture!("tiny.png", Png, 20, 12),
        fixture!("tiny.gif", Gif, 18, 10),
        fixture!("tiny.webp", Webp, 22, 14),
        fixture!("lossless.webp", Webp, 22, 14),
        fixture!("alpha.webp", Webp, 22, 14),
        fixture!("tiny.avif", Avif, 26, 18),
    ]
}

fn fixture(name: &str) -> Fixture {
    fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .expect("no such fixture")
}

/// Feeds `bytes` in chunks of `chunk` bytes (0 = all at once), stopping at the
/// first error as a caller would.
fn inspect_chunked(
    declared: ImageType,
    max_pixels: u64,
    bytes: &[u8],
    chunk: usize,
) -> Result<ImageInfo, InspectError> {
    let mut inspector = ImageInspector::new(declared, max_pixels);
    let size = if chunk == 0 {
        bytes.len().max(1)
    } else {
        chunk
    };
    for part in bytes.chunks(size) {
        inspector.update(part)?;
    }
    inspector.finish()
}

fn inspect(declared: ImageType, bytes: &[u8]) -> Result<ImageInfo, InspectError> {
    inspect_chunked(declared, CAP, bytes, 0)
}

fn find(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

// --- Accepting valid images -------------------------------------------------

#[test]
fn every_fixture_is_accepted_with_its_dimensions() {
    for f in fixtures() {
        let info = inspect(f.image_type, f.bytes).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert_eq!(
            info,
            ImageInfo {
                image_type: f.image_type,
                width: f.width,
                height: f.height
            },
            "{}",
            f.name
        );
    }
}

#[test]
fn chunk_size_does_not_change_the_result() {
    for f in fixtures() {
        let whole = inspect(f.image_type, f.bytes);
        for chunk in [1, 2, 3, 7, 4096] {
            let chunked = inspect_chunked(f.image_type, CAP, f.bytes, chunk);
            assert_eq!(chunked, whole, "{} in chunks of {chunk}", f.name);
        }
    }
}

#[test]
fn progressive_jpeg_with_many_scans_is_accepted() {
    let f = fixture("progressive.jpg");
    assert!(
        find(f.bytes, &[0xFF, 0xDA]).len() >= 2,
        "fixture should be progressive"
    );
    assert!(inspect(ImageType::Jpeg, f.bytes).is_ok());
}

#[test]
fn large_synthetic_png_is_accepted() {
    let png = synthetic::png(1920, 1080, 5 * 1024 * 1024);
    assert_eq!(png.len(), 5 * 1024 * 1024);
    for chunk in [0, 64 * 1024, 8191] {
        let info = inspect_chunked(ImageType::Png, CAP, &png, chunk).unwrap();
        assert_eq!((info.width, info.height), (1920, 1080));
    }
}

#[test]
fn png_stream_matches_png_and_streams_in_about_one_mib() {
    let total = 3 * 1024 * 1024 + 12345;
    let parts: Vec<Vec<u8>> = synthetic::png_stream(10, 20, total).collect();
    assert!(parts.len() >= 3);
    assert!(parts.iter().all(|p| p.len() <= 1024 * 1024 + 64 * 1024));
    let joined: Vec<u8> = parts.concat();
    assert_eq!(joined, synthetic::png(10, 20, total));
    assert_eq!(joined.len(), total);

    let mut inspector = ImageInspector::new(ImageType::Png, CAP);
    for part in synthetic::png_stream(10, 20, total) {
        inspector.update(&part).unwrap();
    }
    let info = inspector.finish().unwrap();
    assert_eq!((info.width, info.height), (10, 20));
}

#[test]
fn synthetic_png_has_exact_length_for_awkward_sizes() {
    for total in [
        0,
        1,
        synthetic::PNG_MIN_LEN,
        58,
        32_780 + 57,
        65_560 + 45,
        65_561 + 45,
        100_000,
    ] {
        let png = synthetic::png(3, 4, total);
        assert_eq!(
            png.len(),
            total.max(synthetic::PNG_MIN_LEN),
            "total {total}"
        );
        assert!(inspect(ImageType::Png, &png).is_ok(), "total {total}");
    }
}

#[test]
fn synthetic_png_chunks_carry_correct_crcs() {
    assert_eq!(synthetic::crc32(b"123456789"), 0xCBF4_3926);
    let png = synthetic::png(7, 9, 200_000);
    let mut at = 8;
    let mut kinds = Vec::new();
    while at < png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let body = &png[at + 4..at + 8 + len];
        let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().unwrap());
        assert_eq!(crc, synthetic::crc32(body), "chunk at {at}");
        kinds.push(body[..4].to_vec());
        at += 12 + len;
    }
    assert_eq!(kinds.first().unwrap(), b"IHDR");
    assert_eq!(kinds.last().unwrap(), b"IEND");
    assert_eq!(at, png.len());
}

#[test]
fn synthetic_jpeg_is_accepted() {
    let jpeg = synthetic::jpeg(4000, 3000, 3 * 1024 * 1024);
    assert!(jpeg.len() >= 3 * 1024 * 1024);
    for chunk in [0, 65_536, 1000] {
        let info = inspect_chunked(ImageType::Jpeg, CAP, &jpeg, chunk).unwrap();
        assert_eq!((info.width, info.height), (4000, 3000));
    }
}

// --- Truncation ------------------------------------------------------------------

#[test]
fn every_proper_prefix_of_every_fixture_is_truncated() {
    // Covers cuts inside the signature, inside the header, in the middle and
    // just before the end: all are `Truncated`, never accepted.
    for f in fixtures() {
        for cut in 1..f.bytes.len() {
            for chunk in [0, 7] {
                let result = inspect_chunked(f.image_type, CAP, &f.bytes[..cut], chunk);
                assert_eq!(
                    result,
                    Err(InspectError::Truncated),
                    "{} cut at {cut} of {}",
                    f.name,
                    f.bytes.len()
                );
            }
        }
    }
}

#[test]
fn named_cut_points_are_truncated() {
    for f in fixtures() {
        let len = f.bytes.len();
        for cut in [2, 20, len / 2, len - 1] {
            assert_eq!(
                inspect(f.image_type, &f.bytes[..cut]),
                Err(InspectError::Truncated),
                "{} cut at {cut}",
                f.name
            );
        }
    }
}

#[test]
fn exif_thumbnail_end_is_not_taken_for_the_end_of_the_image() {
    let f = fixture("exif-thumb.jpg");
    let eois = find(f.bytes, &[0xFF, 0xD9]);
    assert!(
        eois.len() >= 2,
        "fixture should embed a thumbnail with its own EOI"
    );
    let thumbnail_end = eois[0] + 2;
    assert!(thumbnail_end < f.bytes.len() - 2);
    for chunk in [0, 1, 7] {
        assert_eq!(
            inspect_chunked(ImageType::Jpeg, CAP, &f.bytes[..thumbnail_end], chunk),
            Err(InspectError::Truncated)
        );
    }
    let info = inspect(ImageType::Jpeg, f.bytes).unwrap();
    assert_eq!(
        (info.width, info.height),
        (32, 24),
        "size of the image, not the thumbnail"
    );
}

#[test]
fn bytes_after_the_end_are_tolerated_for_jpeg_png_gif_webp() {
    let trailer = b"\x00\x01trailer appended by a phone\xFF\xD8\xFF\xE1";
    for f in fixtures()
        .into_iter()
        .filter(|f| f.image_type != ImageType::Avif)
    {
        let mut bytes = f.bytes.to_vec();
        bytes.extend_from_slice(trailer);
        let info = inspect(f.image_type, &bytes).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert_eq!((info.width, info.height), (f.width, f.height));
    }
}

#[test]
fn avif_must_end_on_a_box_boundary() {
    let mut bytes = fixture("tiny.avif").bytes.to_vec();
    bytes.extend_from_slice(b"junk");
    assert_eq!(
        inspect(ImageType::Avif, &bytes),
        Err(InspectError::Truncated)
    );
    // A whole extra box is fine.
    let mut bytes = fixture("tiny.avif").bytes.to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 12, b'f', b'r', b'e', b'e', 1, 2, 3, 4]);
    assert!(inspect(ImageType::Avif, &bytes).is_ok());
}

/// Splits the fixture's top-level boxes: (offset, size, type).
fn avif_boxes(bytes: &[u8]) -> Vec<(usize, usize, [u8; 4])> {
    let mut boxes = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        boxes.push((at, size, bytes[at + 4..at + 8].try_into().unwrap()));
        at += size;
    }
    boxes
}

#[test]
fn avif_large_size_and_to_end_boxes_are_followed() {
    let f = fixture("tiny.avif");
    let (mdat_at, mdat_size, kind) = *avif_boxes(f.bytes).last().unwrap();
    assert_eq!(&kind, b"mdat");
    assert_eq!(mdat_at + mdat_size, f.bytes.len());
    let payload = &f.bytes[mdat_at + 8..];

    // size == 1: 64-bit largesize after the type.
    let mut large = f.bytes[..mdat_at].to_vec();
    large.extend_from_slice(&1u32.to_be_bytes());
    large.extend_from_slice(b"mdat");
    large.extend_from_slice(&(payload.len() as u64 + 16).to_be_bytes());
    large.extend_from_slice(payload);
    for chunk in [0, 1, 5] {
        assert_eq!(
            inspect_chunked(ImageType::Avif, CAP, &large, chunk).map(|_| ()),
            Ok(())
        );
    }
    assert_eq!(
        inspect(ImageType::Avif, &large[..large.len() - 1]),
        Err(InspectError::Truncated)
    );

    // size == 0: the box runs to the end of the file, wherever that is.
    let mut to_end = f.bytes.to_vec();
    to_end[mdat_at..mdat_at + 4].copy_from_slice(&0u32.to_be_bytes());
    assert!(inspect(ImageType::Avif, &to_end).is_ok());
    to_end.extend_from_slice(b"more");
    assert!(inspect(ImageType::Avif, &to_end).is_ok());
}

#[test]
fn avif_cut_before_its_mdat_is_truncated() {
    let f = fixture("tiny.avif");
    let (mdat_at, _, _) = *avif_boxes(f.bytes).last().unwrap();
    assert_eq!(
        inspect(ImageType::Avif, &f.bytes[..mdat_at]),
        Err(InspectError::Truncated)
    );
}

#[test]
fn webp_odd_riff_size_is_accepted_with_or_without_its_pad_byte() {
    // lossless.webp + an unknown 1-byte chunk: the RIFF size becomes odd.
    let mut bytes = fixture("lossless.webp").bytes.to_vec();
    bytes.extend_from_slice(b"XTRA\x01\x00\x00\x00\x2A");
    let riff_size = (bytes.len() - 8) as u32;
    assert_eq!(riff_size % 2, 1);
    bytes[4..8].copy_from_slice(&riff_size.to_le_bytes());
    assert!(inspect(ImageType::Webp, &bytes).is_ok(), "pad byte omitted");
    bytes.push(0);
    assert!(inspect(ImageType::Webp, &bytes).is_ok(), "pad byte present");
    bytes.truncate(bytes.len() - 2);
    assert_eq!(
        inspect(ImageType::Webp, &bytes),
        Err(InspectError::Truncated)
    );
}

#[test]
fn gif_without_trailer_is_truncated_even_if_it_ends_in_0x3b() {
    let f = fixture("tiny.gif");
    let mut bytes = f.bytes[..f.bytes.len() - 1].to_vec(); // drop the trailer
    assert_eq!(
        inspect(ImageType::Gif, &bytes),
        Err(InspectError::Truncated)
    );
    // Cut inside a data sub-block whose last byte happens to be 0x3B.
    let cut = bytes.len() - 3;
    bytes.truncate(cut);
    bytes.push(0x3B);
    assert_eq!(
        inspect(ImageType::Gif, &bytes),
        Err(InspectError::Truncated)
    );
}

// --- Wrong type, not an image, empty --------------------------------------------

#[test]
fn png_declared_as_jpeg_is_a_mismatch_detected_on_the_first_chunk() {
    let png = fixture("tiny.png").bytes;
    let mut inspector = ImageInspector::new(ImageType::Jpeg, CAP);
    let error = inspector.update(&png[..16]).unwrap_err();
    assert_eq!(
        error,
        InspectError::TypeMismatch {
            declared: ImageType::Jpeg,
            detected: ImageType::Png
        }
    );
    assert_eq!(error.code(), "content-type-mismatch");
    assert_eq!(
        error.to_string(),
        "the file is a PNG image but was declared as image/jpeg"
    );
    // Sticky: later calls repeat the verdict.
    assert_eq!(inspector.update(&png[16..]), Err(error.clone()));
    assert_eq!(inspector.finish(), Err(error));
}

#[test]
fn every_fixture_declared_as_another_type_is_a_mismatch() {
    for f in fixtures() {
        for declared in ImageType::ALL.into_iter().filter(|t| *t != f.image_type) {
            assert_eq!(
                inspect(declared, f.bytes),
                Err(InspectError::TypeMismatch {
                    declared,
                    detected: f.image_type
                }),
                "{} declared as {declared}",
                f.name
            );
        }
    }
}

#[test]
fn html_declared_as_png_is_not_an_image() {
    let mut html = b"<!DOCTYPE html>\n<html><head><title>hi</title></head><body>".to_vec();
    html.resize(20_000, b' ');
    let expected = InspectError::NotAnImage {
        detected: Some("text/html".to_owned()),
    };
    // Early: the verdict comes within the first SNIFF_LIMIT bytes.
    let mut inspector = ImageInspector::new(ImageType::Png, CAP);
    let result = html[..SNIFF_LIMIT]
        .chunks(1000)
        .try_for_each(|part| inspector.update(part));
    assert_eq!(result, Err(expected.clone()));
    // Short documents get it at finish.
    assert_eq!(inspect(ImageType::Png, &html[..80]), Err(expected.clone()));
    assert_eq!(expected.code(), "not-an-image");
    assert!(expected.to_string().contains("text/html"), "{expected}");
}

#[test]
fn random_bytes_are_not_an_image() {
    for seed in 0..20 {
        let bytes = synthetic::random_bytes(seed, 10_000);
        for declared in ImageType::ALL {
            let result = inspect(declared, &bytes);
            assert!(
                matches!(result, Err(InspectError::NotAnImage { .. })),
                "seed {seed} as {declared}: {result:?}"
            );
        }
    }
}

#[test]
fn other_image_formats_are_not_accepted_images() {
    let bmp = b"BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00";
    assert_eq!(
        inspect(ImageType::Png, bmp),
        Err(InspectError::NotAnImage {
            detected: Some("image/bmp".to_owned())
        })
    );
}

#[test]
fn empty_body_is_empty() {
    assert_eq!(inspect(ImageType::Png, b""), Err(InspectError::Empty));
    let mut inspector = ImageInspector::new(ImageType::Jpeg, CAP);
    inspector.update(&[]).unwrap();
    assert_eq!(inspector.finish(), Err(InspectError::Empty));
    assert_eq!(InspectError::Empty.code(), "empty-body");
}

// --- Pixel cap ----------------------------------------------------------------------

#[test]
fn png_pixel_bomb_header_is_too_many_pixels_before_any_truncation_verdict() {
    let header = synthetic::png_header_only(60_000, 60_000);
    let expected = InspectError::TooManyPixels {
        width: 60_000,
        height: 60_000,
        max_pixels: CAP,
    };
    for chunk in [0, 1, 7] {
        // Raised by `update`, and repeated by `finish`.
        let mut inspector = ImageInspector::new(ImageType::Png, CAP);
        let result = header
            .chunks(if chunk == 0 { header.len() } else { chunk })
            .try_for_each(|part| inspector.update(part));
        assert_eq!(result, Err(expected.clone()), "chunk {chunk}");
        assert_eq!(inspector.finish(), Err(expected.clone()));
    }
    assert_eq!(expected.code(), "image-too-many-pixels");
    assert_eq!(
        expected.to_string(),
        "the image is 60000×60000 = 3.6 gigapixels; the limit is 100 megapixels"
    );
}

#[test]
fn pixel_cap_is_inclusive_and_applies_to_every_type() {
    for f in fixtures() {
        let pixels = u64::from(f.width) * u64::from(f.height);
        assert!(
            inspect_chunked(f.image_type, pixels, f.bytes, 0).is_ok(),
            "{}",
            f.name
        );
        assert_eq!(
            inspect_chunked(f.image_type, pixels - 1, f.bytes, 0),
            Err(InspectError::TooManyPixels {
                width: f.width,
                height: f.height,
                max_pixels: pixels - 1
            }),
            "{}",
            f.name
        );
    }
}

#[test]
fn jpeg_pixel_bomb_is_caught_from_its_sof() {
    let header = synthetic::jpeg_header_only(65_535, 65_535);
    assert!(matches!(
        inspect_chunked(ImageType::Jpeg, CAP, &header, 1),
        Err(InspectError::TooManyPixels {
            width: 65_535,
            height: 65_535,
            ..
        })
    ));
}

/// tiny.jpg with `count` APP2 segments of `each` bytes inserted after the SOI.
fn jpeg_with_big_metadata(count: usize, each: usize) -> Vec<u8> {
    let tiny = fixture("tiny.jpg").bytes;
    let mut bytes = tiny[..2].to_vec();
    for _ in 0..count {
        bytes.extend_from_slice(&[0xFF, 0xE2]);
        bytes.extend_from_slice(&((each + 2) as u16).to_be_bytes());
        // Looks like markers, including an EOI, but is segment payload.
        bytes.extend((0..each).map(|i| [0xFF, 0xD9, 0x00][i % 3]));
    }
    bytes.extend_from_slice(&tiny[2..]);
    bytes
}

#[test]
fn jpeg_size_beyond_the_head_comes_from_the_sof() {
    let bytes = jpeg_with_big_metadata(3, 40_000);
    assert!(bytes.len() > HEAD_LIMIT + 40_000);
    for chunk in [0, 4096, 1000] {
        let info = inspect_chunked(ImageType::Jpeg, CAP, &bytes, chunk).unwrap();
        assert_eq!((info.width, info.height), (24, 16));
    }
    // And the cap still applies there.
    assert!(matches!(
        inspect_chunked(ImageType::Jpeg, 100, &bytes, 4096),
        Err(InspectError::TooManyPixels { .. })
    ));
}

#[test]
fn jpeg_fill_bytes_before_a_marker_are_accepted() {
    // Legal (B.1.1.2) but `imagesize` misreads it; the SOF from the walker is used.
    let tiny = fixture("tiny.jpg").bytes;
    let mut bytes = tiny[..2].to_vec();
    bytes.extend_from_slice(&[0xFF, 0xFF]);
    bytes.extend_from_slice(&tiny[2..]);
    for chunk in [0, 1, 7] {
        let info = inspect_chunked(ImageType::Jpeg, CAP, &bytes, chunk).unwrap();
        assert_eq!((info.width, info.height), (24, 16));
    }
}

// --- Damage -----------------------------------------------------------------------

#[test]
fn png_whose_first_chunk_is_not_ihdr_is_unreadable() {
    let mut bytes = fixture("tiny.png").bytes.to_vec();
    bytes[12..16].copy_from_slice(b"IDAT");
    assert_eq!(
        inspect(ImageType::Png, &bytes),
        Err(InspectError::HeaderUnreadable)
    );
    assert_eq!(
        InspectError::HeaderUnreadable.code(),
        "image-header-unreadable"
    );
}

#[test]
fn jpeg_with_garbage_where_a_marker_belongs_is_unreadable() {
    let mut bytes = fixture("tiny.jpg").bytes.to_vec();
    // Where the segment after APP0 should start with FF.
    let app0_len = usize::from(u16::from_be_bytes([bytes[4], bytes[5]]));
    bytes[4 + app0_len] = 0x00;
    assert_eq!(
        inspect(ImageType::Jpeg, &bytes),
        Err(InspectError::HeaderUnreadable)
    );
}

#[test]
fn webp_without_riff_is_unreadable() {
    let mut bytes = fixture("tiny.webp").bytes.to_vec();
    bytes[..4].copy_from_slice(b"RIFX");
    assert_eq!(
        inspect(ImageType::Webp, &bytes),
        Err(InspectError::HeaderUnreadable)
    );
}

#[test]
fn avif_whose_meta_box_does_not_fit_the_head_is_unreadable() {
    // Grow `meta` with a `free` child bigger than the head.
    let f = fixture("tiny.avif");
    let (meta_at, meta_size, kind) = avif_boxes(f.bytes)[1];
    assert_eq!(&kind, b"meta");
    let filler = HEAD_LIMIT;
    let mut bytes = f.bytes[..meta_at].to_vec();
    bytes.extend_from_slice(&((meta_size + 8 + filler) as u32).to_be_bytes());
    bytes.extend_from_slice(&f.bytes[meta_at + 4..meta_at + 12]); // type + version/flags
    bytes.extend_from_slice(&((8 + filler) as u32).to_be_bytes());
    bytes.extend_from_slice(b"free");
    bytes.resize(bytes.len() + filler, 0);
    bytes.extend_from_slice(&f.bytes[meta_at + 12..]);
    assert_eq!(
        inspect(ImageType::Avif, &bytes),
        Err(InspectError::HeaderUnreadable)
    );
}

#[test]
fn damaged_and_cut_inputs_never_panic() {
    let mut rng = synthetic::random_bytes(42, 200_000).into_iter();
    let mut next = move || usize::from(rng.next().unwrap()) << 8 | usize::from(rng.next().unwrap());
    for f in fixtures() {
        for _ in 0..300 {
            let mut bytes = f.bytes.to_vec();
            for _ in 0..1 + next() % 4 {
                let at = next() % bytes.len();
                bytes[at] = next() as u8;
            }
            bytes.truncate(1 + next() % bytes.len());
            let chunk = 1 + next() % 64;
            let _ = inspect_chunked(f.image_type, CAP, &bytes, chunk);
        }
    }
}

#[test]
fn messages_are_specific() {
    let cases = [
        (
            InspectError::TypeMismatch {
                declared: ImageType::Png,
                detected: ImageType::Avif,
            },
            "the file is an AVIF image but was declared as image/png",
        ),
        (
            InspectError::TooManyPixels {
                width: 20_000,
                height: 15_000,
                max_pixels: 250_000_000,
            },
            "the image is 20000×15000 = 300 megapixels; the limit is 250 megapixels",
        ),
        (
            InspectError::TooManyPixels {
                width: 30,
                height: 30,
                max_pixels: 800,
            },
            "the image is 30×30 = 900 pixels; the limit is 800 pixels",
        ),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
    assert_eq!(InspectError::Truncated.code(), "image-truncated");
    let none = InspectError::NotAnImage { detected: None };
    assert!(none.to_string().contains("image/jpeg, image/png"), "{none}");
}

// --- Throughput (release builds: `cargo test --release -- --ignored --nocapture`) ---

#[test]
#[ignore = "benchmark; run in release with --ignored --nocapture"]
fn throughput_on_256_mib_png_and_jpeg() {
    const SIZE: usize = 256 * 1024 * 1024;
    let start = std::time::Instant::now();
    let png = synthetic::png(20_000, 5_000, SIZE);
    eprintln!(
        "generating the png: {:.2} GB/s",
        SIZE as f64 / start.elapsed().as_secs_f64() / 1e9
    );
    let jpeg = synthetic::jpeg(10_000, 10_000, SIZE);
    // Worst case for the entropy scan: every other byte is an FF (all stuffed).
    let mut stuffed = synthetic::jpeg(10_000, 10_000, 0);
    stuffed.truncate(stuffed.len() - 2); // EOI
    stuffed.extend(std::iter::repeat_n([0xFF, 0x00], SIZE / 2).flatten());
    stuffed.extend_from_slice(&[0xFF, 0xD9]);
    let cases = [
        ("png", ImageType::Png, &png),
        ("jpeg", ImageType::Jpeg, &jpeg),
        ("jpeg, all FF 00", ImageType::Jpeg, &stuffed),
    ];
    for (name, image_type, bytes) in cases {
        for chunk in [16 * 1024, 64 * 1024, 1024 * 1024] {
            let mut best = f64::MAX;
            for _ in 0..3 {
                let start = std::time::Instant::now();
                let info = inspect_chunked(image_type, u64::MAX, bytes, chunk).unwrap();
                best = best.min(start.elapsed().as_secs_f64());
                assert_eq!(info.image_type, image_type);
            }
            eprintln!(
                "{name}: {} MiB in {} KiB chunks: {:.1} ms, {:.2} GB/s",
                bytes.len() >> 20,
                chunk >> 10,
                best * 1e3,
                bytes.len() as f64 / best / 1e9
            );
        }
    }
}
