//! SDP offer/answer (RFC 3264) for G.711 audio and RFC 4733 telephone-event.
//! Owned by the media work; see `media` for how the answer is used.
