//! What reaches the LoadBalancer announcer from the node's network: any
//! frame a neighbour sends to the ARP packet socket. Parsing never panics;
//! a frame that parses builds back into its first 42 bytes, and the reply
//! to a request goes back to its sender.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_linux::arp;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = arp::parse(data) {
        assert_eq!(&arp::build(&p)[..], &data[..arp::FRAME_LEN]);
        let r = arp::reply_to(&p, [2, 0, 0, 0, 0, 9]);
        assert_eq!(r.eth_dst, p.sender_mac);
        assert_eq!(arp::parse(&arp::build(&r)), Ok(r));
    }
});
