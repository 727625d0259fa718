// libvips for image derivatives (Imaging target). libvips passes optional arguments as
// NULL-terminated variadic lists, which Swift cannot call, and starts up through a macro;
// each call shape Imaging needs gets a fixed-arity wrapper here, prefixed `ncfs_vips_`.
#pragma once
#include <vips/vips.h>

/// VIPS_INIT is a macro; this wrapper lets Swift start libvips once per process.
static inline int ncfs_vips_init(const char *argv0) { return VIPS_INIT(argv0); }

/// vips_image_new_from_file is variadic. Opens lazily: only the header is read until pixels
/// are asked for. `fail_on` (a VipsFailOn) makes decoder damage an error instead of grey.
static inline VipsImage *ncfs_vips_image_new_from_file(const char *filename, int fail_on) {
    return vips_image_new_from_file(filename, "fail_on", (VipsFailOn) fail_on, NULL);
}

/// vips_thumbnail is variadic. Shrink-on-load thumbnail of a file that fits in
/// width × height, never enlarged (size = DOWN), turned upright by its EXIF orientation
/// (the default), first page only (the default for animations).
/// `export_profile` NULL keeps libvips's own sRGB/B_W processing space (right for images
/// without an ICC profile; CMYK is then read through libvips's built-in CMYK profile);
/// "srgb" converts through the embedded profile to sRGB.
static inline int ncfs_vips_thumbnail(const char *filename, VipsImage **out, int width, int height,
                                      const char *export_profile, int fail_on) {
    if (export_profile)
        return vips_thumbnail(filename, out, width, "height", height, "size", VIPS_SIZE_DOWN,
                              "export_profile", export_profile, "fail_on", (VipsFailOn) fail_on, NULL);
    return vips_thumbnail(filename, out, width, "height", height, "size", VIPS_SIZE_DOWN,
                          "fail_on", (VipsFailOn) fail_on, NULL);
}

/// vips_thumbnail_image is variadic. The same thumbnail of an image already in memory
/// (the decoded preview), so the smaller derivatives do not decode the file again.
static inline int ncfs_vips_thumbnail_image(VipsImage *in, VipsImage **out, int width, int height) {
    return vips_thumbnail_image(in, out, width, "height", height, "size", VIPS_SIZE_DOWN, NULL);
}

/// vips_flatten is variadic and takes its background as a VipsArrayDouble: JPEG has no
/// alpha, so transparent pixels become white rather than black.
static inline int ncfs_vips_flatten_white(VipsImage *in, VipsImage **out) {
    double white[] = {255.0, 255.0, 255.0};
    VipsArrayDouble *background = vips_array_double_new(white, 3);
    int result = vips_flatten(in, out, "background", background, NULL);
    vips_area_unref(VIPS_AREA(background));
    return result;
}

/// vips_cast is variadic. Pixel reads (palette) want plain 8-bit samples.
static inline int ncfs_vips_cast_uchar(VipsImage *in, VipsImage **out) {
    return vips_cast(in, out, VIPS_FORMAT_UCHAR, NULL);
}

/// The savers are variadic. Every derivative drops all metadata (`strip`; libvips 8.14
/// has no finer `keep`): EXIF — including the orientation already applied —, XMP, IPTC
/// and ICC; the pixels are sRGB, which is what a browser assumes without a profile.
/// (libvips 8.14.1's WebP saver ignores `strip`; Imaging removes those chunks itself.)
static inline int ncfs_vips_jpegsave(VipsImage *in, const char *filename, int quality) {
    return vips_jpegsave(in, filename, "Q", quality, "strip", TRUE, "optimize_coding", TRUE, NULL);
}
static inline int ncfs_vips_webpsave(VipsImage *in, const char *filename, int quality) {
    return vips_webpsave(in, filename, "Q", quality, "strip", TRUE, NULL);
}
static inline int ncfs_vips_pngsave(VipsImage *in, const char *filename) {
    return vips_pngsave(in, filename, "strip", TRUE, NULL);
}
static inline int ncfs_vips_gifsave(VipsImage *in, const char *filename) {
    return vips_gifsave(in, filename, "strip", TRUE, NULL);
}

/// vips_getpoint is variadic. Returns a g_malloc'd array of one double per band.
static inline int ncfs_vips_getpoint(VipsImage *in, double **vector, int *n, int x, int y) {
    return vips_getpoint(in, vector, n, x, y, NULL);
}

/// vips_foreign_find_load answers with a class name ("VipsForeignLoadJpegFile"); this
/// gives the operation's nickname ("jpegload"), which names the format family.
static inline const char *ncfs_vips_nickname_of_class(const char *class_name) {
    GType type = g_type_from_name(class_name);
    return type ? vips_nickname_find(type) : NULL;
}

/// Whether this libvips was built with a saver or loader of that nickname ("gifsave",
/// "heifload"): optional formats depend on the libraries the distribution linked in.
static inline int ncfs_vips_has_operation(const char *nickname) {
    return vips_type_find("VipsOperation", nickname) != 0;
}

/// G_OBJECT is a macro; images are GObjects and are released with g_object_unref.
static inline void ncfs_vips_image_unref(VipsImage *image) { g_object_unref(G_OBJECT(image)); }
