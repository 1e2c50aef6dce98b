import FuzzSupport
import LifeboatCore
import LifeboatVault
import SystemPackage

/// A layer file as a point reader and `vault verify` open it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLayer(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let path = FuzzFile.write(UnsafeRawBufferPointer(start: start, count: count), suffix: ".layer")
    guard let layer = try? LayerReader(path: FilePath(path)) else { return 0 }
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
