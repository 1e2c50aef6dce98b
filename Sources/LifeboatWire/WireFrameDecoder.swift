import LifeboatCore
import LifeboatWireFormat
import NIOCore

/// Cuts the byte stream into frames; a length past `WireFrame.maxBytes` ends the connection.
struct WireFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = WireFrame

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let total = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        guard total >= 4, Int(total) <= WireFrame.maxBytes else {
            throw LifeboatError(.corrupt, "a wire frame of \(total) bytes (at most \(WireFrame.maxBytes))")
        }
        guard buffer.readableBytes >= 4 + Int(total) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        let rest = buffer.readBytes(length: Int(total))!
        context.fireChannelRead(wrapInboundOut(try WireFrame.decode(rest: rest)))
        return .continue
    }
}
