import FoundationEssentials
import Logging
import TextFormat

/// One JSON object per line on standard error (`--log-format json`): `time` (RFC 3339, UTC, milliseconds),
/// `level`, `logger`, `message`, then the metadata as strings (keys sorted), for log collectors.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    public let label: String
    private let write: @Sendable (String) -> Void

    public init(label: String, level: Logger.Level = .notice, write: @escaping @Sendable (String) -> Void = JSONLogHandler.standardError) {
        self.label = label
        self.logLevel = level
        self.write = write
    }

    public static let standardError: @Sendable (String) -> Void = { line in
        printError(line)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        if let error = event.error { merged["error"] = "\(error)" }
        write(Self.line(time: Date(), level: event.level, label: label, message: "\(event.message)", metadata: merged))
    }

    /// The JSON line (with its newline) for one log event.
    public static func line(time: Date, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var fields: [(String, String)] = [
            ("time", timestamp(time)), ("level", level.rawValue), ("logger", label), ("message", message),
        ]
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) where !["time", "level", "logger", "message"].contains(key) {
            fields.append((key, "\(value)"))
        }
        var out = "{"
        for (i, (key, value)) in fields.enumerated() {
            if i > 0 { out += "," }
            JSONText.quote(key, into: &out)
            out += ":"
            JSONText.quote(value, into: &out)
        }
        return out + "}\n"
    }

    static func timestamp(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))   // UTC, "…T07:04:13.123Z"
    }
}
