package xfrm

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ipsec"
)

// Probe SA: a distinctive SPI ("SPIA") between TEST-NET-1 addresses.
const probeSPI = 0x53504941

var (
	probeSrc = netip.MustParseAddr("192.0.2.253")
	probeDst = netip.MustParseAddr("192.0.2.254")
)

// Supported reports whether the kernel accepts ESP states in the current
// network namespace: it adds a throwaway ESP tunnel SA (aes-cbc + hmac-sha1)
// and deletes it again. When it returns false, the reason says why, in terms
// an operator can act on. The daemon's `--dataplane auto` uses it.
func Supported() (bool, string) {
	sa := ipsec.SA{
		Src: probeSrc, Dst: probeDst, Proto: alg.ESP, SPI: probeSPI, Mode: alg.Tunnel,
		Cipher: alg.AES128, CipherKey: make(alg.Key, 16),
		Integ: alg.HMACSHA1, IntegKey: make(alg.Key, 20),
	}
	d := &Dataplane{cfg: config{reqIDBase: DefaultReqIDBase}}
	info, err := d.stateInfo(&sa)
	if err != nil {
		return false, err.Error()
	}
	attrs, err := stateAttrs(&sa)
	if err != nil {
		return false, err.Error()
	}
	sock, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_XFRM)
	if err != nil {
		return false, socketReason(err)
	}
	defer sock.Close()
	_ = sock.SetExtAck(true) // the kernel's own words ("Requested type not found")
	sh := map[int]*nl.SocketHandle{unix.NETLINK_XFRM: {Socket: sock}}
	del := func() error {
		req := nl.NewNetlinkRequest(nl.XFRM_MSG_DELSA, unix.NLM_F_ACK)
		req.Sockets = sh
		req.AddData(&nl.XfrmUsersaId{Daddr: info.Id.Daddr, Spi: info.Id.Spi, Family: info.Family, Proto: info.Id.Proto})
		_, err := req.Execute(unix.NETLINK_XFRM, 0)
		return err
	}
	req := nl.NewNetlinkRequest(nl.XFRM_MSG_NEWSA, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.Sockets = sh
	req.AddData(info)
	for _, a := range attrs {
		req.AddData(a)
	}
	_, err = req.Execute(unix.NETLINK_XFRM, 0)
	if errors.Is(err, unix.EEXIST) { // a probe that was interrupted: it worked then
		err = nil
	}
	if err != nil {
		return false, probeReason(err)
	}
	if err := del(); err != nil && !errors.Is(err, unix.ESRCH) {
		return true, fmt.Sprintf("ESP state accepted, but the probe SA 0x%08x could not be deleted: %v", uint32(probeSPI), err)
	}
	return true, "kernel accepted an ESP state (aes-cbc/hmac-sha1) in this network namespace"
}

func socketReason(err error) string {
	if errors.Is(err, unix.EPROTONOSUPPORT) {
		return "kernel has no XFRM netlink interface (xfrm_user not built or loaded)"
	}
	return fmt.Sprintf("cannot open an XFRM netlink socket: %v", err)
}

// probeReason explains a failed NEWSA. Kernels before 5.x said ESRCH for a
// missing ESP type; later ones say EPROTONOSUPPORT with the extended ack
// "Requested type not found".
func probeReason(err error) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Sprintf("XFRM netlink request failed: %v", err)
	}
	switch errno {
	case unix.ESRCH, unix.EPROTONOSUPPORT:
		return fmt.Sprintf("kernel has XFRM but no ESP (%v): CONFIG_INET_ESP is off or esp4 cannot be loaded", err)
	case unix.EPERM, unix.EACCES:
		return "not permitted to configure XFRM: need CAP_NET_ADMIN"
	case unix.ENOENT:
		return "kernel has ESP but cannot initialise its crypto (cbc(aes)/hmac(sha1) or stdrng missing: load drbg)"
	}
	return fmt.Sprintf("kernel refused an ESP state: %v (%s)", errno, unix.ErrnoName(errno))
}
