//! pcap-filter front end: what a tcpdump user types, compiled to conjunctive filters with tcpdump's verdicts.
