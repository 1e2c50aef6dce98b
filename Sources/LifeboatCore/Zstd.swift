import CZstd

/// zstd one-shot compression (Debian libzstd): the shipping codec of journal segments.
public enum Zstd {
    public static func compress(_ input: UnsafeRawBufferPointer, level: Int32 = 3) throws(LifeboatError) -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var n = 0
        // Uninitialized: zstd writes what is kept (a zero fill first would be one more pass).
        let out = [UInt8](unsafeUninitializedCapacity: bound) { buffer, count in
            n = ZSTD_compress(buffer.baseAddress, bound, input.baseAddress, input.count, level)
            count = czstd_is_error(n) != 0 ? 0 : n
        }
        if czstd_is_error(n) != 0 { throw LifeboatError(.io, "zstd compress: " + String(cString: ZSTD_getErrorName(n))) }
        return out
    }

    /// Decompresses one frame whose content size is recorded in its header (as `compress` writes).
    public static func decompress(_ input: UnsafeRawBufferPointer, maxSize: Int) throws(LifeboatError) -> [UInt8] {
        let size = ZSTD_getFrameContentSize(input.baseAddress, input.count)
        // ZSTD_CONTENTSIZE_UNKNOWN / _ERROR are the two top values of unsigned long long.
        guard size < UInt64.max - 1, size <= UInt64(maxSize) else {
            throw LifeboatError(.corrupt, "zstd frame has no valid content size (or exceeds \(maxSize) bytes)")
        }
        var n = 0
        // Uninitialized, and kept only when zstd filled it whole.
        let out = [UInt8](unsafeUninitializedCapacity: Int(size)) { buffer, count in
            n = ZSTD_decompress(buffer.baseAddress, Int(size), input.baseAddress, input.count)
            count = czstd_is_error(n) == 0 && n == Int(size) ? n : 0
        }
        if czstd_is_error(n) != 0 { throw LifeboatError(.corrupt, "zstd decompress: " + String(cString: ZSTD_getErrorName(n))) }
        guard n == Int(size) else { throw LifeboatError(.corrupt, "zstd frame decoded to \(n) bytes, header says \(size)") }
        return out
    }
}

/// A reusable zstd compression context (one per thread): no allocation per call beyond the
/// output, and every frame carries zstd's content checksum, so damage is found at decompression.
public final class ZstdCompressor {
    private let context: OpaquePointer

    public init(level: Int32 = 3) {
        context = ZSTD_createCCtx()
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)
    }

    deinit {
        ZSTD_freeCCtx(context)
        scratch.deallocate()
    }

    /// Appends one frame holding `input` to `output`; returns the frame's length. Compresses
    /// into a scratch buffer kept between calls, then appends with one copy.
    public func compress(_ input: UnsafeRawBufferPointer, appendingTo output: inout [UInt8]) throws -> Int {
        let bound = ZSTD_compressBound(input.count)
        if scratch.count < bound {
            scratch.deallocate()
            scratch = .allocate(byteCount: bound, alignment: 16)
        }
        let n = ZSTD_compress2(context, scratch.baseAddress, bound, input.baseAddress, input.count)
        if czstd_is_error(n) != 0 { throw LifeboatError(.io, "zstd compress: " + String(cString: ZSTD_getErrorName(n))) }
        output.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[0..<n]))
        return n
    }

    private var scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 0, alignment: 16)
}

/// A reusable zstd decompression context.
public final class ZstdDecompressor {
    private let context: OpaquePointer

    public init() { context = ZSTD_createDCtx() }
    deinit { ZSTD_freeDCtx(context) }

    /// Decompresses exactly one frame of `input` into `output`, which must be its exact size.
    public func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws {
        let n = ZSTD_decompressDCtx(context, output.baseAddress, output.count, input.baseAddress, input.count)
        if czstd_is_error(n) != 0 {
            throw LifeboatError(.corrupt, "zstd frame does not decode: " + String(cString: ZSTD_getErrorName(n)))
        }
        guard n == output.count else { throw LifeboatError(.corrupt, "zstd frame decoded to \(n) bytes, \(output.count) expected") }
    }
}

public enum ZstdFrame {
    /// The content size a frame's header declares, if it declares one.
    public static func contentSize(_ frame: UnsafeRawBufferPointer) -> UInt64? {
        let size = ZSTD_getFrameContentSize(frame.baseAddress, frame.count)
        return size >= UInt64.max - 1 ? nil : size
    }
}
