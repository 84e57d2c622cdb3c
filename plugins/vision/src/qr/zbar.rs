// SPDX-License-Identifier: MIT OR Apache-2.0
//! ZBar (Debian's libzbar0, LGPL-2.1, linked dynamically) reading QR codes from a greyscale
//! image. The few calls are bound here rather than through the zbar-rust crate, whose own
//! LGPL licence would be compiled into the gate's MIT/Apache binaries.

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void};

#[repr(C)]
struct Scanner {
    _private: [u8; 0],
}
#[repr(C)]
struct Image {
    _private: [u8; 0],
}
#[repr(C)]
struct Symbol {
    _private: [u8; 0],
}

/// zbar.h: `ZBAR_NONE` (every symbology), `ZBAR_QRCODE`, `ZBAR_CFG_ENABLE`.
const ZBAR_NONE: c_int = 0;
const ZBAR_QRCODE: c_int = 64;
const ZBAR_CFG_ENABLE: c_int = 0;
/// The fourcc of 8-bit greyscale.
const Y800: c_ulong = u32::from_le_bytes(*b"Y800") as c_ulong;

#[link(name = "zbar")]
unsafe extern "C" {
    fn zbar_image_scanner_create() -> *mut Scanner;
    fn zbar_image_scanner_destroy(scanner: *mut Scanner);
    fn zbar_image_scanner_set_config(
        scanner: *mut Scanner,
        symbology: c_int,
        config: c_int,
        value: c_int,
    ) -> c_int;
    fn zbar_image_create() -> *mut Image;
    fn zbar_image_destroy(image: *mut Image);
    fn zbar_image_set_format(image: *mut Image, format: c_ulong);
    fn zbar_image_set_size(image: *mut Image, width: c_uint, height: c_uint);
    fn zbar_image_set_data(
        image: *mut Image,
        data: *const c_void,
        length: c_ulong,
        cleanup: *const c_void,
    );
    fn zbar_scan_image(scanner: *mut Scanner, image: *mut Image) -> c_int;
    fn zbar_image_first_symbol(image: *const Image) -> *const Symbol;
    fn zbar_symbol_next(symbol: *const Symbol) -> *const Symbol;
    fn zbar_symbol_get_data(symbol: *const Symbol) -> *const c_char;
    fn zbar_symbol_get_data_length(symbol: *const Symbol) -> c_uint;
    fn zbar_symbol_get_loc_size(symbol: *const Symbol) -> c_uint;
    fn zbar_symbol_get_loc_x(symbol: *const Symbol, index: c_uint) -> c_int;
    fn zbar_symbol_get_loc_y(symbol: *const Symbol, index: c_uint) -> c_int;
}

/// A ZBar scanner for QR codes only, kept between frames.
pub struct ZbarScanner {
    scanner: *mut Scanner,
    image: *mut Image,
}

// SAFETY: the scanner and image belong to this value alone and ZBar keeps no thread-local
// state; `scan` takes `&mut self`, so they are never used from two threads at once.
unsafe impl Send for ZbarScanner {}

impl ZbarScanner {
    /// `None` when ZBar cannot allocate its scanner.
    pub fn new() -> Option<ZbarScanner> {
        // SAFETY: plain constructors; null is checked before any use.
        unsafe {
            let scanner = zbar_image_scanner_create();
            let image = zbar_image_create();
            if scanner.is_null() || image.is_null() {
                if !scanner.is_null() {
                    zbar_image_scanner_destroy(scanner);
                }
                if !image.is_null() {
                    zbar_image_destroy(image);
                }
                return None;
            }
            zbar_image_scanner_set_config(scanner, ZBAR_NONE, ZBAR_CFG_ENABLE, 0);
            zbar_image_scanner_set_config(scanner, ZBAR_QRCODE, ZBAR_CFG_ENABLE, 1);
            zbar_image_set_format(image, Y800);
            Some(ZbarScanner { scanner, image })
        }
    }

    /// Every QR code in the `width × height` greyscale `grey`: its bytes and corner points.
    pub fn scan(
        &mut self,
        grey: &[u8],
        width: usize,
        height: usize,
        mut found: impl FnMut(&[u8], &[(i32, i32)]),
    ) {
        if grey.len() < width * height || width == 0 || height == 0 {
            return;
        }
        let mut corners = Vec::with_capacity(4);
        // SAFETY: the image points at `grey` only for this call (reset to null before
        // returning), and ZBar reads width × height bytes of it, which the check above
        // guarantees; symbols and their data live in the image until the next scan, and are
        // copied out before then.
        unsafe {
            zbar_image_set_size(self.image, width as c_uint, height as c_uint);
            zbar_image_set_data(
                self.image,
                grey.as_ptr().cast(),
                (width * height) as c_ulong,
                std::ptr::null(),
            );
            if zbar_scan_image(self.scanner, self.image) > 0 {
                let mut symbol = zbar_image_first_symbol(self.image);
                while !symbol.is_null() {
                    let data = zbar_symbol_get_data(symbol).cast::<u8>();
                    let length = zbar_symbol_get_data_length(symbol) as usize;
                    corners.clear();
                    for index in 0..zbar_symbol_get_loc_size(symbol) {
                        corners.push((
                            zbar_symbol_get_loc_x(symbol, index),
                            zbar_symbol_get_loc_y(symbol, index),
                        ));
                    }
                    if !data.is_null() {
                        found(std::slice::from_raw_parts(data, length), &corners);
                    }
                    symbol = zbar_symbol_next(symbol);
                }
            }
            zbar_image_set_data(self.image, std::ptr::null(), 0, std::ptr::null());
        }
    }
}

impl Drop for ZbarScanner {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once here.
        unsafe {
            zbar_image_destroy(self.image);
            zbar_image_scanner_destroy(self.scanner);
        }
    }
}
