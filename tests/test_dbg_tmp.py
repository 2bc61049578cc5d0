from tests.test_data import *
def test_dbg(class_folders, make_photo):
    for index in range(3):
        make_photo(f"data/birds/{index}.jpg")
    data = ImageData.from_folder(class_folders, **QUIET)
    print("COUNTS", data.counts(), data.report.few_images)
