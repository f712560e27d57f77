//! net: the libp2p shell that carries Cairn market messages between nodes.
