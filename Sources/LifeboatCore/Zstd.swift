import CZstd

/// zstd one-shot compression (Debian libzstd): the shipping codec of journal segments.
public enum Zstd {
    public static func compress(_ input: UnsafeRawBufferPointer, level: Int32 = 3) throws(LifeboatError) -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var out = [UInt8](repeating: 0, count: bound)
        let n = out.withUnsafeMutableBytes { ZSTD_compress($0.baseAddress, bound, input.baseAddress, input.count, level) }
        if czstd_is_error(n) != 0 { throw LifeboatError(.io, "zstd compress: " + String(cString: ZSTD_getErrorName(n))) }
        out.removeSubrange(n...)
        return out
    }

    /// Decompresses one frame whose content size is recorded in its header (as `compress` writes).
    public static func decompress(_ input: UnsafeRawBufferPointer, maxSize: Int) throws(LifeboatError) -> [UInt8] {
        let size = ZSTD_getFrameContentSize(input.baseAddress, input.count)
        // ZSTD_CONTENTSIZE_UNKNOWN / _ERROR are the two top values of unsigned long long.
        guard size < UInt64.max - 1, size <= UInt64(maxSize) else {
            throw LifeboatError(.corrupt, "zstd frame has no valid content size (or exceeds \(maxSize) bytes)")
        }
        var out = [UInt8](repeating: 0, count: Int(size))
        let n = out.withUnsafeMutableBytes { ZSTD_decompress($0.baseAddress, Int(size), input.baseAddress, input.count) }
        if czstd_is_error(n) != 0 { throw LifeboatError(.corrupt, "zstd decompress: " + String(cString: ZSTD_getErrorName(n))) }
        guard n == Int(size) else { throw LifeboatError(.corrupt, "zstd frame decoded to \(n) bytes, header says \(size)") }
        return out
    }
}
