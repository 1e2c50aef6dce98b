import FuzzSupport
import LifeboatCore
import LifeboatVault
import SystemPackage

/// The sealer of the sealed fixture (layer-v2-sealed.layer): the example key, group 00…0f.
let exampleSealer: FrameSealer? = {
    let hex = Array(((0x20..<0x40).map { String($0, radix: 16) }.joined() + "\n").utf8)
    let path = hex.withUnsafeBytes { FuzzFile.write($0, suffix: ".key") }
    guard let key = try? VaultKey.load(FilePath(path)) else { fatalError("the example key does not load") }
    return FrameSealer(key: key, groupID: Array(0..<16))
}()

/// A layer file as a point reader and `vault verify` open it: plain, and sealed with the
/// example key (a mutated sealed frame must fail authentication, never trap).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLayer(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let data, count > 0 else { return 0 }
    let start = UnsafeRawPointer(data)
    let path = FuzzFile.write(UnsafeRawBufferPointer(start: start, count: count), suffix: ".layer")
    check(path, sealer: nil)
    check(path, sealer: exampleSealer)
    return 0
}

func check(_ path: String, sealer: FrameSealer?) {
    guard let layer = try? LayerReader(path: FilePath(path), sealer: sealer) else { return }
    try? layer.verifyAll()
    if layer.header.entryCount > 0 {
        let e = layer.entry(0)
        var out = [UInt8](repeating: 0, count: BlockSize.bytes)
        var scratch: [UInt8] = []
        if let found = layer.lookup(disk: e.disk, block: e.block, atOrBefore: e.lsn) {
            _ = try? out.withUnsafeMutableBytes { try layer.readBlock(found, into: $0, scratch: &scratch, decompressor: ZstdDecompressor()) }
        }
    }
}

/// The entry point SwiftPM links as `main` (see FuzzSupport.runFuzzer).
@_cdecl("fuzz_layer_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzLayer)
}
