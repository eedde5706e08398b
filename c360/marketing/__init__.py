"""What marketing uses: segment definitions and their rule language, consent-aware exports, destination sync
(activation) and the segments page (ui). Reads the warehouse the pipeline builds; never imports c360.cli or c360dev.
"""
