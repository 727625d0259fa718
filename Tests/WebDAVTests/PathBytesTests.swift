import Testing
import WebDAV

@Suite("PathBytes: paths split at their slash bytes")
struct PathBytesTests {
    @Test("a slash followed by a combining mark (one Character to Swift) still splits")
    func combiningMarkAfterSlash() {
        let path = "Photos/a/\u{301}b.jpg"
        #expect(path.split(separator: "/") == ["Photos", "a/\u{301}b.jpg"], "the premise: a Character-based split misses that slash")
        #expect(PathBytes.components(path) == ["Photos", "a", "\u{301}b.jpg"])
        #expect(PathBytes.split(path) == (parent: "Photos/a", name: "\u{301}b.jpg"))
        #expect(PathBytes.lastComponent(path) == "\u{301}b.jpg")
    }

    @Test("no slash, leading, trailing and doubled slashes")
    func edges() {
        #expect(PathBytes.split("name") == (parent: "", name: "name"))
        #expect(PathBytes.split("/name") == (parent: "", name: "name"))
        #expect(PathBytes.split("a/") == (parent: "a", name: ""))
        #expect(PathBytes.components("//a//b/") == ["a", "b"])
        #expect(PathBytes.components("") == [])
        #expect(PathBytes.beforeLastSlash("a/b/c") == "a/b" && PathBytes.beforeLastSlash("a/\u{301}b") == "a")
        #expect(PathBytes.beforeLastSlash("name") == "name")
    }
}
