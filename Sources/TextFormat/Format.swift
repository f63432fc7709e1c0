import Namespace
#if canImport(Glibc)
import Glibc
#endif

/// printf-style text (C's vsnprintf): `format("%8.3f s", seconds)`. For numbers only — `%d`, `%f`, `%x`, `%%` with
/// their flags and widths (Swift's `Int` is 64 bits: `%d` reads its low 32 bits, enough for counts; `%ld` for more);
/// text goes in by interpolation, never as `%s`. What Foundation's `String(format:)` did here, without Foundation.
public func format(_ format: String, _ arguments: CVarArg...) -> String {
    withVaList(arguments) { list in
        var buffer = [CChar](repeating: 0, count: 256)
        // vsnprintf consumes the va_list: measure and print from copies of the same arguments.
        let needed = Int(vsnprintf(&buffer, buffer.count, format, list))
        if needed < buffer.count { return String(decoding: buffer.prefix(max(0, needed)).map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        return withVaList(arguments) { again in
            var large = [CChar](repeating: 0, count: needed + 1)
            _ = vsnprintf(&large, large.count, format, again)
            return String(decoding: large.prefix(needed).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }
}

extension StringProtocol {
    /// The text padded with spaces to `width` characters, or cut to `width` when it is longer (as Foundation's
    /// `padding(toLength:withPad:startingAt:)` with a space did, for columns).
    public func padded(to width: Int) -> String {
        let count = self.count
        if count >= width { return String(prefix(Swift.max(0, width))) }
        return String(self) + String(repeating: " ", count: width - count)
    }

    /// Without the spaces, tabs and line ends at both ends.
    public func trimmed() -> String {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isBlank($0) }), let last = lastIndex(where: { !isBlank($0) }) else { return "" }
        return String(self[first...last])
    }
}

/// Writes `text` to standard error as it is, unbuffered (write(2) until all of it is out; an error ends it:
/// there is nowhere left to report it).
public func printError(_ text: String) {
    let bytes = Array(text.utf8)
    var written = 0
    while written < bytes.count {
        guard case .success(let n) = syscall({ bytes.withUnsafeBytes { write(2, $0.baseAddress! + written, $0.count - written) } }),
              n > 0 else { return }
        written += n
    }
}
