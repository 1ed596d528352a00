"""Container networking: bridge networks, IPAM, embedded DNS, published ports.

The engine talks to `bridge.BridgeDriver(paths, conn, settings)`:

    create(name, subnet=, gateway=, ip_range=, internal=, ...) / remove(ref) / get / networks / inspect
    ensure_predefined()                       the bridge, host and none records docker always lists
    connect(ref, cid, name=, netns_path=, aliases=, ipv4=, mac=, dns=) -> EndpointRecord
    disconnect(ref, cid) / disconnect_all(cid)
    publish(ref, cid, [PortRequest]) -> [PortBinding] / unpublish(ref, cid) / port_bindings(cid)
    resolv_conf(ref, dns=, dns_search=, dns_options=) / hosts(cid, hostname=, extra_hosts=)
    restore(ref)                              re-install host state (after a firewall reload)

Namespaces: `netns.create(runroot, name)` -> path for the OCI spec, `netns.delete(path)`.
Parsing of -p: `ports.parse_publish(spec)`. Module map: netns, links (rtnetlink), ipam, store (records),
nft (rules), ports (reservation), publish (DNAT + proxy), dns / proxy (helper processes), daemon
(their lifecycle), hostfiles (/etc/hosts, /etc/resolv.conf).
"""
