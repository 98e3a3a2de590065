"""DHCPv4 (RFC 2131 / 2132) with RFC 3118 authentication: the codec (`wire`), authentication
(`auth`), the lease store (`leases`) and threatlab's own sans-IO server (`server`)."""
