"""UTPTrack: unified token pruning (search region, dynamic and static template) for one-stream trackers."""
