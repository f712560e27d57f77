//! A tile of a frame, as a provider returns it and the requester joins it.
#![no_main]

use cairn_exec::tiles::Bitmap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(bitmap) = Bitmap::decode(data) else {
        return;
    };
    let row = bitmap.width as usize * usize::from(bitmap.bytes_per_pixel);
    assert_eq!(bitmap.pixels.len(), row * bitmap.height as usize);
    // What the requester writes reads back as the same pixels.
    assert_eq!(Bitmap::decode(&bitmap.encode()).as_ref(), Ok(&bitmap));
});
