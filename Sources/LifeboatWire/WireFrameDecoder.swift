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
        guard buffer.readableBytes >= 4 + Int(total) else {
            // Room for the whole frame at once: the cumulation buffer would otherwise double its
            // way up to a segment's size, copying what it holds at each step. (Only a peer past
            // the mutual-TLS handshake, an enrolled site, gets here: at most maxBytes each.)
            buffer.reserveCapacity(minimumWritableBytes: 4 + Int(total) - buffer.readableBytes)
            return .needMoreData
        }
        // Header and body straight out of the buffer: one copy of a body of up to 96 MiB, not two.
        let headerCount = Int(buffer.getInteger(at: buffer.readerIndex + 4, as: UInt32.self) ?? 0)
        try WireFrame.checkHeaderLength(headerCount, rest: Int(total))
        buffer.moveReaderIndex(forwardBy: 8)
        let header = buffer.readBytes(length: headerCount)!
        let body = buffer.readBytes(length: Int(total) - 4 - headerCount)!
        context.fireChannelRead(wrapInboundOut(WireFrame(header: header, body: body)))
        return .continue
    }
}
