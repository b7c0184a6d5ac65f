//! Synthetic .deb files (placeholder).
