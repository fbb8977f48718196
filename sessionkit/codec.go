package sessionkit

import (
	"bytes"
	"encoding/json"
)

// Codec turns Go values into stored bytes and back.
type Codec interface {
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into the value v points to.
	Unmarshal(data []byte, v any) error
}

// JSONCodec is the default Codec. Values stay readable and editable with
// redis-cli. Bytes that are not JSON, as left by a hand edit such as
// `HSET key name alice`, decode as the string they spell when the target is
// a *string or *any, instead of failing.
type JSONCodec struct{}

func (JSONCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

func (JSONCodec) Unmarshal(data []byte, v any) error {
	if !json.Valid(data) {
		switch p := v.(type) {
		case *string:
			*p = string(data)
			return nil
		case *any:
			*p = string(data)
			return nil
		}
	}
	// UseNumber keeps integers exact when decoding into any.
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}
