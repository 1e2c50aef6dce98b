import FuzzSupport
import LifeboatCore
import LifeboatVault
import SystemPackage

/// A base's block checksum file as the vault opens it, against a base of as many blocks as the
/// first input byte says: the size rule refuses it, or every block is checked.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBaseChecksums(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let data, count > 0 else { return 0 }
    let start = UnsafeRawPointer(data)
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    guard let blocks = bytes.first.map(Int.init) else { return 0 }
    let path = FuzzFile.write(UnsafeRawBufferPointer(rebasing: bytes.dropFirst()), suffix: ".sums")
    _ = try? BaseChecksumFile.check(path: FilePath(path), blocks: blocks)
    return 0
}

/// The entry point SwiftPM links as `main` (see FuzzSupport.runFuzzer).
@_cdecl("fuzz_base_checksums_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzBaseChecksums)
}
