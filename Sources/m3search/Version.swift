/// The release `m3search --version` prints. The README's "Command line" section quotes
/// it, and a test holds the two together.
let m3searchVersion = "0.1.0"
