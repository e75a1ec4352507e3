package configs

import (
	"errors"
	"testing"
)

func TestProblemError(t *testing.T) {
	for _, c := range []struct {
		p    Problem
		want string
	}{
		{Problem{File: "f.yaml", Line: 3, Column: 5, Tunnel: "api", Key: "listen", Msg: "bad"}, `f.yaml:3:5: tunnel "api": listen: bad`},
		{Problem{File: "f.yaml", Line: 3, Key: "listen", Msg: "bad"}, `f.yaml:3: listen: bad`},
		{Problem{File: "f.yaml", Msg: "no tunnels"}, `f.yaml: no tunnels`},
		{Problem{Line: 3, Column: 5, Tunnel: "api", Key: "listen", Msg: "bad"}, `tunnel "api": listen: bad`},
		{Problem{Key: "allow-all", Msg: "allow-all is mutually exclusive with allow-cn"}, `allow-all is mutually exclusive with allow-cn`},
		{Problem{Key: "allow", Msg: "allow-all is odd"}, `allow: allow-all is odd`},
		{Problem{File: "f", Line: 1, Column: 1, Msg: "m", Warning: true}, `f:1:1: warning: m`},
	} {
		if got := c.p.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
}

func TestProblemFlagError(t *testing.T) {
	for _, c := range []struct {
		p    Problem
		want string
	}{
		{newProblem("allow-all", "{allow-all} is mutually exclusive with {%s}", "allow-cn"), "--allow-all is mutually exclusive with --allow-cn"},
		{newProblem("listen", "invalid address %q", "{x}"), `--listen: invalid address "{x}"`},
		{newProblem("", "at least one of {a} or {b}"), "at least one of --a or --b"},
		{Problem{Key: "target", Msg: "plain message"}, "--target: plain message"},
	} {
		if got := c.p.FlagError(); got != c.want {
			t.Errorf("FlagError() = %q, want %q", got, c.want)
		}
	}
	p := newProblem("k", "{k} has %q", "a\x01b\x02c")
	if p.Msg != `k has "abc"` {
		t.Errorf("markers in values are not stripped: %q", p.Msg)
	}
}

func TestProblems(t *testing.T) {
	var none Problems
	if none.Err() != nil {
		t.Error("empty Problems.Err() is not nil")
	}
	warn := Problems{{Msg: "w", Warning: true}}
	if warn.Err() != nil || warn.HasErrors() {
		t.Error("warnings alone are an error")
	}
	ps := Problems{{File: "f", Line: 9, Msg: "b"}, {Msg: "w", Warning: true}, {File: "f", Line: 2, Msg: "a"}}
	if !ps.HasErrors() || len(ps.Errors()) != 2 || len(ps.Warnings()) != 1 {
		t.Errorf("Errors/Warnings split wrongly: %v / %v", ps.Errors(), ps.Warnings())
	}
	ps.Sort()
	if got, want := ps.Error(), "warning: w\nf:2: a\nf:9: b"; got != want {
		t.Errorf("sorted Error() = %q, want %q", got, want)
	}
	var target Problems
	if err := ps.Err(); !errors.As(err, &target) || len(target) != 3 {
		t.Errorf("errors.As(Err()) = %v", target)
	}
}
