/// The magic numbers of the NBD protocol.
///
/// Values from `doc/proto.md` of the NBD project: "Newstyle negotiation"
/// (`NBDMAGIC`, `IHAVEOPT`), "Fixed newstyle negotiation" (the option reply
/// magic), "Request message", "Simple reply message" and "Structured reply
/// chunk message". All magics travel in network byte order.
public enum NBDMagic {
    /// `0x4e42444d41474943`, ASCII `NBDMAGIC` (`INIT_PASSWD`): first 8 bytes of the server greeting.
    public static let initPassword: UInt64 = 0x4e42_444d_4147_4943
    /// `0x49484156454F5054`, ASCII `IHAVEOPT`: second word of the greeting and the prefix of every option.
    public static let option: UInt64 = 0x4948_4156_454F_5054
    /// `0x3e889045565a9`: the magic of every fixed-newstyle option reply.
    public static let optionReply: UInt64 = 0x3_e889_0455_65a9
    /// `0x25609513` (`NBD_REQUEST_MAGIC`): the magic of a (compact) transmission request.
    public static let request: UInt32 = 0x2560_9513
    /// `0x67446698` (`NBD_SIMPLE_REPLY_MAGIC`): the magic of a simple reply.
    public static let simpleReply: UInt32 = 0x6744_6698
    /// `0x668e33ef` (`NBD_STRUCTURED_REPLY_MAGIC`): the magic of a structured reply chunk.
    public static let structuredReply: UInt32 = 0x668e_33ef
    /// `0x21e41c71` (`NBD_EXTENDED_REQUEST_MAGIC`), reserved by the experimental
    /// `EXTENDED_HEADERS` extension ("Reserved Magic values"); never accepted here.
    public static let extendedRequest: UInt32 = 0x21e4_1c71
}
