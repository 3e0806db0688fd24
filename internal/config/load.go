package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/pflag"
)

// Error is a problem in a configuration file, with its position when known.
type Error struct {
	File string
	Line int // 0 when unknown
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// DecodeFile reads the TOML file at path into v, rejecting unknown keys.
func DecodeFile(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return Decode(path, data, v)
}

// Decode decodes TOML data (named name in errors) into v strictly.
func Decode(name string, data []byte, v any) error {
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		first := strict.Errors[0]
		row, _ := first.Position()
		return &Error{File: name, Line: row, Msg: fmt.Sprintf("unknown key %q", joinKey(first.Key()))}
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		return &Error{File: name, Line: row, Msg: de.Error()}
	}
	return &Error{File: name, Msg: err.Error()}
}

func joinKey(k []string) string {
	var b bytes.Buffer
	for i, p := range k {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// LoadWithFlags reads path into v (whose fields the flags in fs are bound
// to) and then puts back the values of flags given on the command line, so
// that flags override the file and the file overrides defaults. The
// caller validates the result.
func LoadWithFlags(fs *pflag.FlagSet, path string, v any) error {
	if path != "" {
		type saved struct {
			f     *pflag.Flag
			val   string
			slice []string
		}
		var given []saved
		fs.Visit(func(f *pflag.Flag) {
			s := saved{f: f, val: f.Value.String()}
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				s.slice = append([]string(nil), sv.GetSlice()...)
			}
			given = append(given, s)
		})
		if err := DecodeFile(path, v); err != nil {
			return err
		}
		for _, s := range given {
			var err error
			if sv, ok := s.f.Value.(pflag.SliceValue); ok {
				err = sv.Replace(s.slice)
			} else {
				err = s.f.Value.Set(s.val)
			}
			if err != nil {
				return fmt.Errorf("--%s: %w", s.f.Name, err)
			}
		}
	}
	return nil
}
