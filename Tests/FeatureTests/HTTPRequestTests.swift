import Agent
import Testing

/// The request-head parser and the response bytes of the agent's HTTP responder (the sockets are tested in
/// IntegrationTests/HTTPResponderTests.swift).
struct HTTPRequestTests {
    func parse(_ text: String, limit: Int = HTTPRequestParser.maximumHeadBytes) -> HTTPParseResult {
        HTTPRequestParser.parse(Array(text.utf8), limit: limit)
    }

    @Test func aHeadIsCompleteOnlyAtItsBlankLine() {
        #expect(parse("") == .incomplete)
        #expect(parse("GET /metrics HTTP/1.1\r\nHost: h\r\n") == .incomplete)
        #expect(parse("GET /metrics HTTP/1.1\r\nHost: h\r\n\r") == .incomplete)
        #expect(parse("GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n") == .request(HTTPRequestHead(method: "GET", path: "/metrics", minorVersion: 1)))
        // Leading blank lines are skipped (RFC 9112 §2.2), bare LF ends lines.
        #expect(parse("\r\n\r\nGET /readyz?x=1 HTTP/1.0\n\n") == .request(HTTPRequestHead(method: "GET", path: "/readyz", minorVersion: 0)))
        #expect(parse("HEAD http://node:9712/healthz HTTP/1.0\r\n\r\n") == .request(HTTPRequestHead(method: "HEAD", path: "/healthz", minorVersion: 0)))
        #expect(parse("GET http://node:9712 HTTP/1.0\r\n\r\n") == .request(HTTPRequestHead(method: "GET", path: "/", minorVersion: 0)))
        // What follows the head (a body, a second request) is not the parser's business.
        #expect(parse("GET / HTTP/1.0\r\n\r\nGARBAGE") == .request(HTTPRequestHead(method: "GET", path: "/", minorVersion: 0)))
    }

    @Test func theLimitCountsTheWholeHead() {
        let head = "GET / HTTP/1.0\r\nX: " + String(repeating: "a", count: 100) + "\r\n\r\n"
        #expect(parse(head, limit: head.utf8.count) == .request(HTTPRequestHead(method: "GET", path: "/", minorVersion: 0)))
        #expect(parse(head, limit: head.utf8.count - 1) == .refused(status: 431, reason: "the request head is larger than \(head.utf8.count - 1) bytes"))
        // Without a blank line, as soon as the limit is reached.
        #expect(parse(String(repeating: "\r\n", count: 50), limit: 100) == .refused(status: 431, reason: "the request head is larger than 100 bytes"))
        #expect(parse(String(repeating: "\r\n", count: 49), limit: 100) == .incomplete)
    }

    @Test func refusalsSayWhy() {
        #expect(parse("GET / HTTP/1.1\r\n\r\n") == .refused(status: 400, reason: "HTTP/1.1 without Host"))
        #expect(parse("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n") == .refused(status: 400, reason: "more than one Host"))
        #expect(parse("GET / HTTP/3.0\r\n\r\n") == .refused(status: 505, reason: "only HTTP/1.x is served"))
        #expect(parse("GET / HTTP/1.2\r\nHost: h\r\n\r\n") == .request(HTTPRequestHead(method: "GET", path: "/", minorVersion: 1)))
        #expect(parse("GET / HTTP/1\r\n\r\n") == .refused(status: 400, reason: "a malformed HTTP version"))
        #expect(parse("GET / http/1.1\r\n\r\n") == .refused(status: 400, reason: "a malformed HTTP version"))
        #expect(parse("GET /\r\n\r\n") == .refused(status: 400, reason: "a malformed request line"))
        #expect(parse("GET / HTTP/1.0 x\r\n\r\n") == .refused(status: 400, reason: "a malformed request line"))
        #expect(parse("GET ftp://x/ HTTP/1.0\r\n\r\n") == .refused(status: 400, reason: "a malformed request target"))
        #expect(parse("GET / HTTP/1.0\r\nno-colon\r\n\r\n") == .refused(status: 400, reason: "a malformed header field"))
        #expect(parse("GET / HTTP/1.0\r\n: empty name\r\n\r\n") == .refused(status: 400, reason: "a malformed header field"))
        #expect(parse("GET / HTTP/1.0\r\nA: b\r\n\tfolded\r\n\r\n") == .refused(status: 400, reason: "a malformed header field"))
    }

    @Test func responsesCarryLengthDateAndClose() {
        let response = HTTPResponse(status: 405, body: "no\n", allow: "GET, HEAD")
        let date = "Sun, 06 Nov 1994 08:49:37 GMT"
        let head = "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n"
            + "Date: \(date)\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n"
        #expect(String(decoding: response.encoded(date: date), as: UTF8.self) == head + "no\n")
        #expect(String(decoding: response.encoded(head: true, date: date), as: UTF8.self) == head)
        #expect(HTTPResponse.date(784_111_777) == date)
        #expect(HTTPResponse.date(0) == "Thu, 01 Jan 1970 00:00:00 GMT")
    }
}
