import FuzzSupport
import LifeboatCore
import LifeboatVault
import SystemPackage

/// A layer file as a point reader and `vault verify` open it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLayer(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let data, count > 0 else { return 0 }
    let start = UnsafeRawPointer(data)
    let path = FuzzFile.write(UnsafeRawBufferPointer(start: start, count: count), suffix: ".layer")
    guard let layer = try? LayerReader(path: FilePath(path), sealer: nil) else { return 0 }
    try? layer.verifyAll()
    if layer.header.entryCount > 0 {
        let e = layer.entry(0)
        var out = [UInt8](repeating: 0, count: BlockSize.bytes)
        var scratch: [UInt8] = []
        if let found = layer.lookup(disk: e.disk, block: e.block, atOrBefore: e.lsn) {
            _ = try? out.withUnsafeMutableBytes { try layer.readBlock(found, into: $0, scratch: &scratch, decompressor: ZstdDecompressor()) }
        }
    }
    return 0
}

/// The entry point SwiftPM links as `main` (see FuzzSupport.runFuzzer).
@_cdecl("fuzz_layer_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzLayer)
}
