package xfrm

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/spiagent/spiagent/alg"
)

// nftTableName is the table this package owns in each netns it runs in.
const nftTableName = "spiagent_xfrm"

// meterTimeout is how long an idle source stays in the per-source meter.
const meterTimeout = time.Minute

// nftWatch is the kernel half of invalid-SPI detection: an nftables table
// with sets of known inbound SPIs and rules that log (rate-limited) what is
// not in them. See the package doc for the ruleset.
type nftWatch struct {
	conn  *nftables.Conn
	table *nftables.Table
	sets  map[alg.Protocol]*nftables.Set
	meter *nftables.Set // per-source limit, keyed by source address
	cfg   InvalidSPIConfig
}

func spiKey(spi uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], spi)
	return b[:]
}

// newNFTWatch (re)creates the table in the netns named by nsFd (-1: current).
func newNFTWatch(nsFd int, cfg InvalidSPIConfig) (*nftWatch, error) {
	opts := []nftables.ConnOption{}
	if nsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(nsFd))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("xfrm: nftables: %w", err)
	}
	w := &nftWatch{conn: conn, cfg: cfg, sets: map[alg.Protocol]*nftables.Set{}}
	w.table = &nftables.Table{Name: nftTableName, Family: nftables.TableFamilyIPv4}
	// Start clean: a table left by an earlier run is ours to replace.
	if tabs, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4); err == nil {
		for _, t := range tabs {
			if t.Name == nftTableName {
				conn.DelTable(w.table)
			}
		}
	}
	conn.AddTable(w.table)
	for _, p := range []alg.Protocol{alg.ESP, alg.AH} {
		s := &nftables.Set{Table: w.table, Name: p.String() + "_spis", KeyType: nftables.TypeInteger}
		if err := conn.AddSet(s, nil); err != nil {
			return nil, fmt.Errorf("xfrm: nftables set %s: %w", s.Name, err)
		}
		w.sets[p] = s
	}
	w.meter = &nftables.Set{Table: w.table, Name: "src_meter", KeyType: nftables.TypeIPAddr,
		Dynamic: true, HasTimeout: true, Timeout: meterTimeout, Size: cfg.SourceTable}
	if err := conn.AddSet(w.meter, nil); err != nil {
		return nil, fmt.Errorf("xfrm: nftables set %s: %w", w.meter.Name, err)
	}
	prio := nftables.ChainPriorityRef(-150)
	ch := conn.AddChain(&nftables.Chain{
		Name: "input", Table: w.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: prio,
	})
	w.addRule(ch, unix.IPPROTO_ESP, nil, 0, alg.ESP, "esp")
	w.addRule(ch, unix.IPPROTO_AH, nil, 4, alg.AH, "ah")
	if cfg.UDPEncapPort != 0 {
		var port [2]byte
		binary.BigEndian.PutUint16(port[:], cfg.UDPEncapPort)
		dport := []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port[:]},
			// a non-zero first word: ESP, not IKE's non-ESP marker
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 8, Len: 4},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
		}
		w.addRule(ch, unix.IPPROTO_UDP, dport, 8, alg.ESP, "espinudp")
	}
	if err := conn.Flush(); err != nil {
		return nil, fmt.Errorf("xfrm: nftables table %s: %w (is nf_tables, nft_limit, nft_log, nfnetlink_log available?)", nftTableName, err)
	}
	return w, nil
}

// addRule: ip protocol P [extra] @th,off,32 != @set
// update @src_meter { ip saddr limit rate S/second burst B } limit rate R/second log group G.
func (w *nftWatch) addRule(ch *nftables.Chain, l4 byte, extra []expr.Any, spiOff uint32, p alg.Protocol, tag string) {
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{l4}},
	}
	e = append(e, extra...)
	e = append(e,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: spiOff, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: w.sets[p].Name, SetID: w.sets[p].ID, Invert: true},
		&expr.Counter{},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Dynset{SrcRegKey: 1, SetName: w.meter.Name, SetID: w.meter.ID, Operation: unix.NFT_DYNSET_OP_UPDATE,
			Timeout: meterTimeout, Exprs: []expr.Any{&expr.Limit{Type: expr.LimitTypePkts,
				Rate: uint64(w.cfg.SourceRate), Unit: expr.LimitTimeSecond, Burst: w.cfg.SourceBurst}}},
		&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(w.cfg.KernelRate), Unit: expr.LimitTimeSecond, Burst: w.cfg.KernelBurst},
		&expr.Log{
			Key:     1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_SNAPLEN | 1<<unix.NFTA_LOG_PREFIX,
			Group:   w.cfg.NFLOGGroup,
			Snaplen: nflogSnaplen,
			Data:    []byte("spiagent-" + tag),
		},
	)
	w.conn.AddRule(&nftables.Rule{Table: w.table, Chain: ch, Exprs: e})
}

// add and del keep a protocol's known-SPI set in step with the SAD.
func (w *nftWatch) add(p alg.Protocol, spi uint32) error {
	s, ok := w.sets[p]
	if !ok {
		return nil
	}
	if err := w.conn.SetAddElements(s, []nftables.SetElement{{Key: spiKey(spi)}}); err != nil {
		return err
	}
	return w.conn.Flush()
}

func (w *nftWatch) del(p alg.Protocol, spi uint32) error {
	s, ok := w.sets[p]
	if !ok {
		return nil
	}
	if err := w.conn.SetDeleteElements(s, []nftables.SetElement{{Key: spiKey(spi)}}); err != nil {
		return err
	}
	return w.conn.Flush()
}

// close removes the table.
func (w *nftWatch) close() error {
	w.conn.DelTable(w.table)
	return w.conn.Flush()
}
