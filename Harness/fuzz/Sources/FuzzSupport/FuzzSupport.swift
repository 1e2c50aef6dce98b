import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The parsers that read files (layers, VHDs, checksum files) get the input as a file in
/// /dev/shm, rewritten for each run: the same code path as on disk, at memory speed.
public enum FuzzFile {
    public static let path = "/dev/shm/lifeboat-fuzz-\(getpid())"

    public static func write(_ bytes: UnsafeRawBufferPointer, suffix: String = "") -> String {
        let path = Self.path + suffix
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        precondition(fd >= 0, "cannot write \(path)")
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            precondition(n > 0, "cannot write \(path)")
            done += n
        }
        close(fd)
        return path
    }
}

/// libFuzzer's driver, for an entry point of our own: SwiftPM links every executable with
/// `main` defined as `<module>_main`, which `-parse-as-library` leaves to us, so each target
/// defines that and hands over to libFuzzer here (LLVMFuzzerRunDriver, libFuzzer's API for
/// custom mains).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

public func runFuzzer(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                      _ target: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments, target)
}
