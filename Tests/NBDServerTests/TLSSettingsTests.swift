import NBDServer
import Testing

@Suite("TLS settings")
struct TLSSettingsTests {
    @Test func pskFileParsesPsktoolLines() throws {
        let keys = try PSKFile.parse("alice:00ff10\n\nbob:DEADbeef\n", path: "k.psk")
        #expect(keys == ["alice": [0x00, 0xff, 0x10], "bob": [0xde, 0xad, 0xbe, 0xef]])
    }

    @Test(arguments: [
        ("alice00ff\n", TLSSetupError.invalidPSKLine(path: "k.psk", line: 1, reason: "expected username:hexkey")),
        ("alice:00ff\nbob:0g\n", .invalidPSKLine(path: "k.psk", line: 2, reason: "'0g' is not a hex byte")),
        (
            "alice:0ff\n",
            .invalidPSKLine(path: "k.psk", line: 1, reason: "the key must be an even number of hex digits")
        ),
        (":00ff\n", .invalidPSKLine(path: "k.psk", line: 1, reason: "empty username")),
        ("a:00\na:11\n", .invalidPSKLine(path: "k.psk", line: 2, reason: "username 'a' given twice")),
        ("\n\n", .emptyPSKFile(path: "k.psk")),
    ])
    func badPSKFilesAreNamed(text: String, error: TLSSetupError) {
        #expect(throws: error) { try PSKFile.parse(text, path: "k.psk") }
    }

    @Test func defaultCertificateDirectoryFollowsNbdkit() {
        #expect(TLSSettings.defaultCertificateDirectory(isRoot: true, home: "/root") == "/etc/pki/nvme-nbd")
        #expect(TLSSettings.defaultCertificateDirectory(isRoot: false, home: "/home/u") == "/home/u/.pki/nvme-nbd")
    }
}
